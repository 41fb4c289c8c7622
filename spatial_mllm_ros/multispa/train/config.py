"""TrainConfig: one dataclass for every training run, defaulting to the paper's recipe.

Multi-SpatialMLLM fine-tunes InternVL2-8B with LoRA rank 16 on the LLM only (vision encoder and
projector frozen), AdamW, lr 4e-5, cosine schedule, 3% warmup, weight decay 0.01, one epoch, gradient
checkpointing, global batch 192. Flags widen what is trained (projector, vision, full), freeze the LLM
(tuning: frozen, with projector and/or vision training) or train a small model from its config's random
init.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spatial_mllm_ros.multispa.train.errors import TrainConfigError

TUNING_MODES = ("lora", "full", "frozen")  # the LLM: adapters, all weights, or none
FAMILIES = ("auto", "internvl", "qwen2_5_vl", "qwen3_vl")
SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("float32", "bfloat16", "float16")
PROMPT_STYLES = ("as_written", "runtime")
LLM_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class DataSource:
    """One JSONL file (MultiSPA lines) and its share of the training mix."""

    path: str
    ratio: float = 1.0  # relative weight; 1.0 everywhere = concatenate
    image_root: str = ""  # relative image paths resolve here ("" = the JSONL's folder)


@dataclass
class TrainConfig:
    """Every knob of `spatial-mllm train`; the defaults are the paper's LoRA recipe."""

    model: str = ""  # checkpoint directory ("" = the shipped tiny model)
    family: str = "auto"
    data: list[DataSource] = field(default_factory=list)
    output_dir: str = "runs/train"
    # what is trained
    tuning: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LLM_LORA_TARGETS
    train_projector: bool = False
    train_vision: bool = False
    from_scratch: bool = False  # re-initialise all weights from the checkpoint's config (small models)
    # optimisation
    lr: float = 4e-5
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 4  # per process
    grad_accum: int = 1
    gradient_checkpointing: bool = True
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0
    # data handling
    max_length: int = 8192
    max_tiles: int = 6
    group_by_length: bool = False
    max_samples: int = 0  # > 0 caps the mixed dataset (quick runs)
    # "as_written": each sample's own prompt and answer sentence (the paper's data, any model);
    # "runtime": rewritten as the runtime asks and scores (train.asked), for models that are asked only
    # by this package's runtime and have not learnt to read past a sentence (SpatialMLLM-tiny)
    prompt_style: str = "as_written"
    # bookkeeping
    save_every: int = 0  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 0  # > 0: delete all but the newest this many checkpoints (0 = keep all)
    max_minutes: float = 0.0  # > 0: training time (resumed runs count theirs) that ends the run early
    log_every: int = 10
    resume: str = ""  # "" = fresh, "auto" = latest checkpoint in output_dir, or a checkpoint dir
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.data = [d if isinstance(d, DataSource) else DataSource(**d) for d in self.data]
        self.lora_targets = tuple(self.lora_targets)
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        self.validate()

    def validate(self) -> None:
        """Raise TrainConfigError naming the first bad value."""
        checks: list[tuple[str, bool, str]] = [
            ("tuning", self.tuning in TUNING_MODES, f"one of {TUNING_MODES}"),
            (
                "tuning",
                self.tuning != "frozen" or self.train_projector or self.train_vision,
                "lora or full when neither the projector nor the vision encoder trains",
            ),
            ("family", self.family in FAMILIES, f"one of {FAMILIES}"),
            ("scheduler", self.scheduler in SCHEDULERS, f"one of {SCHEDULERS}"),
            ("dtype", self.dtype in DTYPES, f"one of {DTYPES}"),
            ("prompt_style", self.prompt_style in PROMPT_STYLES, f"one of {PROMPT_STYLES}"),
            ("max_minutes", self.max_minutes >= 0, ">= 0"),
            ("keep_checkpoints", self.keep_checkpoints >= 0, ">= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("grad_accum", self.grad_accum >= 1, ">= 1"),
            ("lora_r", self.lora_r >= 1, ">= 1"),
            ("epochs", self.epochs > 0 or self.max_steps > 0, "> 0 (or set max_steps)"),
            ("max_length", self.max_length >= 16, ">= 16"),
        ]
        checks += [(f"data[{i}].ratio", d.ratio > 0, "> 0") for i, d in enumerate(self.data)]
        for key, ok, want in checks:
            if not ok:
                raise TrainConfigError(f"train config: {key}={getattr(self, key, '?')!r} must be {want}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key is an error that names it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainConfigError(f"train config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Load a YAML file (top-level mapping, optionally under a `train:` key)."""
        p = Path(path)
        if not p.is_file():
            raise TrainConfigError(f"train config file not found: {p}")
        values = yaml.safe_load(p.read_text()) or {}
        if not isinstance(values, dict):
            raise TrainConfigError(f"train config {p}: top level must be a mapping")
        return cls.from_dict(values.get("train", values))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-ready)."""
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["adam_betas"] = list(self.adam_betas)
        return d
