"""Training checkpoints in safetensors + JSON only (no pickles): weights, optimizer, scheduler, RNG, position.

Optimizer state is split into its tensors (safetensors) and its plain numbers (JSON), so a resume reads
nothing executable and continues the run exactly.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from spatial_mllm_ros.multispa.train.errors import ResumeError

STATE_FILES = ("trainable.safetensors", "optimizer.safetensors", "state.json")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return the parameters being trained, by name (what a resume must restore)."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        plain["state"][str(pid)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain["state"][str(pid)][key] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in plain["state"].items()}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states: torch's as tensors, Python's and NumPy's as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    np_state = np.random.get_state()
    plain = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    """Restore what rng_state saved."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    v, s, g = plain["python"]
    random.setstate((v, tuple(s), g))
    n = plain["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint directory (rank 0 only)."""
    path.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(path / "trainable.safetensors"))
    opt_tensors, opt_plain = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_plain = rng_state()
    save_file({**opt_tensors, **rng_tensors}, str(path / "optimizer.safetensors"))
    state = {
        "progress": progress,
        "optimizer": opt_plain,
        "scheduler": scheduler.state_dict(),
        "rng": rng_plain,
    }
    (path / "state.json").write_text(json.dumps(state))
    return path


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `path`; returns the saved progress dict."""
    missing = [f for f in STATE_FILES if not (path / f).is_file()]
    if missing:
        raise ResumeError(f"cannot resume from {path}: missing {', '.join(missing)}")
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - {n for n, p in params.items() if p.requires_grad})
    if unknown:
        raise ResumeError(f"checkpoint {path} trains other parameters than this run (e.g. {unknown[0]})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "optimizer.safetensors"))
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    opt = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
    optimizer.load_state_dict(_join_optimizer(opt, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(rng, state["rng"])
    return dict(state["progress"])


def checkpoints(output_dir: Path) -> list[Path]:
    """Return the complete `checkpoint-<step>` directories under output_dir, oldest first."""
    found = [
        p
        for p in output_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """Return the newest `checkpoint-<step>` directory under output_dir, if any."""
    found = checkpoints(output_dir)
    return found[-1] if found else None


def prune_checkpoints(output_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (keep 0: delete none); return the deleted ones."""
    old = checkpoints(output_dir)[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path)
    return old
