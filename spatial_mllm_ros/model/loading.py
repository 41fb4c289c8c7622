"""Load a local checkpoint offline: family detection, safety checks, device/dtype, LoRA adapters."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    ModelLoadError,
    UnknownFamilyError,
    UnsafeCheckpointError,
)
from spatial_mllm_ros.model.factory import FAMILIES, default_checkpoint

log = logging.getLogger(__name__)

# config.json model_type -> family; internvl_chat is the original (remote-code) InternVL2 layout.
MODEL_TYPES: dict[str, str] = {
    "internvl": "internvl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "internvl_chat": "internvl",
}
REMOTE_CODE_TYPES = frozenset({"internvl_chat"})
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The oldest transformers the runtime works with (requirements/base.txt says the same). Under 5.17 and
# 5.21-5.23 closed-set scores drifted from the native forward (by up to 0.09 under 5.17) and under 5.17
# Qwen-VL generation refused our precomputed vision embeddings: wrong answers, not errors, so an older
# version is refused at load.
MIN_TRANSFORMERS = "5.24"


@dataclass
class LoadedModel:
    """A model ready for inference plus the facts the runtime needs about it."""

    model: Any
    tokenizer: Any
    family: str
    checkpoint: Path | None
    device: torch.device
    dtype: torch.dtype
    n_params: int
    name: str


def resolve_device(requested: str) -> torch.device:
    """Auto -> cuda when available, else cpu; an explicit cuda without a GPU is a load error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but CUDA is not available here")
    return device


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """Auto -> bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    if requested != "auto":
        return DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptCheckpointError(str(path), f"invalid JSON ({exc})") from exc


def check_weights(path: Path) -> list[Path]:
    """Return the checkpoint's safetensors files, each with a readable header; pickled weights are refused."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise UnsafeCheckpointError(
                f"{path} holds only pickled weights (*.bin/*.pt); convert to safetensors"
            )
        raise CheckpointNotFoundError(str(path / "model.safetensors"), "weights file")
    from safetensors import safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                keys = list(handle.keys())
                if keys:
                    handle.get_slice(keys[-1])  # touches the last tensor's extent
        except Exception as exc:  # safetensors raises SafetensorError/OSError/... for bad files
            raise CorruptCheckpointError(str(f), f"{type(exc).__name__}: {exc}") from exc
        size = f.stat().st_size
        expected = _safetensors_extent(f)
        if expected is not None and size < expected:
            raise CorruptCheckpointError(str(f), f"truncated: {size} bytes, header says {expected}")
    return files


def _safetensors_extent(path: Path) -> int | None:
    """Total file size the safetensors header promises (8-byte length + header + data)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            return None
        n = int.from_bytes(raw, "little")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return 8 + n + (max(ends) if ends else 0)


def detect_family(path: Path, requested: str = "auto") -> tuple[str, str]:
    """(family, model_type) from config.json; `requested` must agree when it is not auto."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointNotFoundError(str(cfg_path), "config.json")
    model_type = str(_read_json(cfg_path).get("model_type", ""))
    if requested not in ("auto", *FAMILIES):
        raise UnknownFamilyError(requested, FAMILIES)
    family = MODEL_TYPES.get(model_type)
    if family is None:
        raise UnknownFamilyError(model_type or "(no model_type)", FAMILIES)
    if requested != "auto" and requested != family:
        raise ModelLoadError(f"{path} is a {model_type} checkpoint, but family {requested!r} was requested")
    return family, model_type


def resolve_checkpoint(config: ModelConfig) -> Path:
    """Return the checkpoint directory: the configured one, or the shipped tiny model."""
    path = Path(config.checkpoint).expanduser() if config.checkpoint else default_checkpoint()
    if not path.is_dir():
        raise CheckpointNotFoundError(str(path))
    return path


def _apply_adapter(model: Any, adapter: str, merge: bool) -> Any:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise CheckpointNotFoundError(str(path / "adapter_config.json"), "LoRA adapter config")
    check_weights(path)
    base = Path(str(_read_json(path / "adapter_config.json").get("base_model_name_or_path") or ""))
    if (base / "config.json").is_file():
        base_type = _read_json(base / "config.json").get("model_type")
        if base_type != model.config.model_type:
            raise ModelLoadError(
                f"LoRA adapter {path} was trained on a {base_type} model ({base}), "
                f"not this {model.config.model_type} checkpoint",
            )
    try:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(f"LoRA adapter {path} does not fit the checkpoint: {exc}") from exc
    if merge:
        return peft_model.merge_and_unload()
    return peft_model.get_base_model()  # LoRA layers stay injected; the runtime drives the base model


def check_transformers(version: str | None = None) -> None:
    """Refuse a transformers older than MIN_TRANSFORMERS (default: the installed one)."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    if Version(version) < Version(MIN_TRANSFORMERS):
        raise ModelLoadError(
            f"transformers {version} is older than {MIN_TRANSFORMERS}, the oldest this runtime is tested "
            f"with (older ones score answers differently): pip install 'transformers>={MIN_TRANSFORMERS},<6'"
        )


def load(config: ModelConfig) -> LoadedModel:
    """Load checkpoint (+ adapter) offline onto the configured device/dtype; raise ModelLoadError subtypes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_checkpoint(config)
    family, model_type = detect_family(path, config.family)
    if model_type in REMOTE_CODE_TYPES:
        if not config.trust_remote_code:
            raise UnsafeCheckpointError(
                f"{path} ({model_type}) needs the checkpoint's own Python code; set trust_remote_code: true "
                "only for a checkpoint you trust, or use the native '-hf' conversion",
            )
        log.warning("trust_remote_code is on: executing Python code shipped in %s", path)
        raise UnsafeCheckpointError(
            f"{path} ({model_type}): the remote-code InternVL2 layout is not driven by this runtime; "
            "convert it to the native InternVL '-hf' layout",
        )
    check_weights(path)
    check_transformers()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    try:
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            str(path),
            dtype=dtype,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=config.trust_remote_code,
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    if config.adapter:
        model = _apply_adapter(model, config.adapter, config.merge_adapter)
    model = model.to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    mem = (
        torch.cuda.memory_allocated(device)
        if device.type == "cuda"
        else sum(p.numel() * p.element_size() for p in model.parameters())
    )
    log.info(
        "loaded %s (%s, %.1fM parameters) on %s as %s, %.1f MiB",
        path.name,
        family,
        n_params / 1e6,
        device,
        str(dtype).removeprefix("torch."),
        mem / 2**20,
    )
    return LoadedModel(model, tokenizer, family, path, device, dtype, n_params, path.name)
