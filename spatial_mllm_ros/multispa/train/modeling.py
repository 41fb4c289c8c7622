"""Load a checkpoint for training and decide what trains: LoRA on the LLM, projector, vision, or all."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.model.factory import default_checkpoint
from spatial_mllm_ros.model.preprocess import ImageSpec
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.train.config import TrainConfig
from spatial_mllm_ros.multispa.train.errors import FamilyMismatchError, TrainConfigError

log = logging.getLogger(__name__)

MODEL_TYPES: dict[str, str] = {"internvl": "internvl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}
VISION_PREFIXES = (
    "vision_tower",
    "visual.",
)  # InternVL's tower; Qwen's `visual` (its merger is the projector)
PROJECTOR_PREFIXES = ("multi_modal_projector", "visual.merger", "visual.deepstack_merger")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainableModel:
    """A model ready to train, with what the data pipeline needs to build its inputs."""

    model: Any
    tokenizer: Any
    family: str
    image_spec: ImageSpec
    prompts: PromptEncoder
    checkpoint: Path


def detect_family(checkpoint: Path) -> str:
    """Return the family named by config.json's model_type."""
    cfg = checkpoint / "config.json"
    if not cfg.is_file():
        raise TrainConfigError(f"model checkpoint {checkpoint} has no config.json")
    model_type = json.loads(cfg.read_text()).get("model_type", "")
    if model_type not in MODEL_TYPES:
        raise TrainConfigError(
            f"checkpoint {checkpoint}: unsupported model_type {model_type!r}; "
            f"supported: {sorted(MODEL_TYPES)}"
        )
    return MODEL_TYPES[model_type]


def _model_class(family: str) -> Any:
    import transformers

    return {
        "internvl": transformers.InternVLForConditionalGeneration,
        "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
        "qwen3_vl": transformers.Qwen3VLForConditionalGeneration,
    }[family]


def _part(name: str) -> str:
    bare = name.split("base_model.model.", 1)[-1].removeprefix("model.")
    if bare.startswith(PROJECTOR_PREFIXES):
        return "projector"
    if bare.startswith(VISION_PREFIXES):
        return "vision"
    return "llm"


def set_trainable(model: Any, config: TrainConfig) -> dict[str, int]:
    """Freeze/unfreeze by part (LoRA adapters stay trainable); returns trainable parameter counts."""
    wanted = {
        "vision": config.train_vision,
        "projector": config.train_projector,
        "llm": config.tuning == "full",
    }
    counts = {"vision": 0, "projector": 0, "llm": 0, "lora": 0}
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad = True
            counts["lora"] += p.numel()
            continue
        part = _part(name)
        p.requires_grad = wanted[part]
        counts[part] += p.numel() if p.requires_grad else 0
    return counts


def load_for_training(config: TrainConfig) -> TrainableModel:
    """Load tokenizer + model (offline, safetensors), re-init if from_scratch, apply LoRA and freezing."""
    from transformers import AutoTokenizer

    checkpoint = Path(config.model) if config.model else default_checkpoint()
    family = detect_family(checkpoint)
    if config.family != "auto" and config.family != family:
        raise FamilyMismatchError(str(checkpoint), family, config.family)
    cls = _model_class(family)
    dtype = DTYPES[config.dtype]
    if config.from_scratch:
        from transformers import AutoConfig

        model = cls(AutoConfig.from_pretrained(checkpoint, local_files_only=True)).to(dtype)
    else:
        model = cls.from_pretrained(checkpoint, dtype=dtype, local_files_only=True, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if config.tuning == "lora":
        from peft import LoraConfig, get_peft_model

        targets = "|".join(config.lora_targets)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=rf".*language_model.*\.({targets})",
            bias="none",
        )
        model = get_peft_model(model, lora)
    counts = set_trainable(model, config)
    log.info("trainable parameters: %s", counts)
    spec = ImageSpec.from_checkpoint(
        family, model.config, checkpoint, max_tiles=config.max_tiles, use_thumbnail=config.max_tiles > 1
    )
    return TrainableModel(model, tokenizer, family, spec, PromptEncoder(tokenizer, family), checkpoint)
