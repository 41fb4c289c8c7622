"""FinetuneRecipe: every setting of `spatial-mllm train --recipe finetune`, as one config object."""

from __future__ import annotations

from dataclasses import dataclass

from spatial_mllm_ros.config import option

TRAINABLE_PARTS = ("vision", "projector", "llm")


@dataclass
class FinetuneRecipe:
    """Everything `--recipe finetune` does; the defaults fit SpatialMLLM-tiny on one CPU core."""

    data: list[str] = option(default_factory=list, help="training JSONL files (`spatial-mllm data generate`)")
    eval: list[str] = option(
        default_factory=list, help="held-out JSONL files or benchmark folders (none: split off by recording)"
    )
    checkpoint: str = option("", help="model to start from ('' = the shipped SpatialMLLM-tiny)")
    output_dir: str = option("runs/finetune", help="checkpoints, the model (final/), the report (eval/)")
    heldout_share: float = option(
        0.2, help="share of the recordings held out when no eval data is given", range=(0.0, 0.9)
    )
    eval_per_task: int = option(
        200, help="held-out questions per sub-task scored before and after (0: all)", range=(0, None)
    )
    minutes: float = option(15.0, help="training time that ends the run (0: none)", range=(0.0, None))
    max_steps: int = option(0, help="optimizer steps (0: `epochs` of the training data)", range=(0, None))
    epochs: float = option(
        3.0, help="passes over the training data, unless the minutes end it", range=(0.0, None)
    )
    batch_size: int = option(16, help="samples per step", range=(1, None))
    lr: float = option(1e-4, help="peak learning rate (warmup, then cosine)", range=(0.0, None))
    warmup_ratio: float = option(0.05, help="share of the steps warming up", range=(0.0, 0.99))
    # what trains: everything by default; docs/training.md argues it with measurements (a new look needs
    # the vision encoder, new sub-tasks the language model; replayed data, not freezing, keeps old skills)
    train: tuple[str, ...] = option(
        ("vision", "projector", "llm"), help="parts that train; the rest stay frozen", choices=TRAINABLE_PARTS
    )
    save_every: int = option(
        50, help="steps between resumable checkpoints (the newest 2 are kept)", range=(1, None)
    )
    seed: int = option(0, help="held-out split, sample order and initialisation of the run")
    device: str = option("cpu", help="cpu, cuda[:N] or auto")
