"""ModelConfig: what to load and how to run it; one schema for YAML, ROS parameters and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spatial_mllm_ros.config import option

FAMILY_CHOICES = ("auto", "internvl", "qwen2_5_vl", "qwen3_vl")
VISION_BACKENDS = ("tensorrt", "onnxruntime", "onnxruntime-int8", "torch-compile", "torch")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
QUESTION_BATCH_CHOICES = ("auto", "tree", "padded")
SHIFT_EXPERT_DIR = "shift_expert"  # shift_expert "auto": this folder inside the checkpoint


def shift_expert_path(choice: str, checkpoint: Path | None) -> Path | None:
    """Return the expert `choice` (ModelConfig.shift_expert) names for `checkpoint`; None: there is none."""
    if choice in ("", "none"):
        return None
    if choice == "auto":
        found = None if checkpoint is None else checkpoint / SHIFT_EXPERT_DIR
        return found if found is not None and found.is_dir() else None
    return Path(choice).expanduser()


@dataclass
class ModelConfig:
    """How to load the spatial model and run it (device, precision, tiling, backends, limits)."""

    checkpoint: str = option("", help="local checkpoint directory (HF format); empty: the shipped tiny model")
    family: str = option("auto", help="model family; auto reads config.json", choices=FAMILY_CHOICES)
    adapter: str = option("", help="peft LoRA adapter directory applied on top of the checkpoint")
    merge_adapter: bool = option(True, help="merge the LoRA adapter into the weights at load (faster)")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    dtype: str = option("auto", help="auto: bfloat16/float16 on CUDA, float32 on CPU", choices=DTYPE_CHOICES)
    max_tiles: int = option(
        6, help="InternVL dynamic tiling: at most this many 448-px tiles per frame", range=(1, 40)
    )
    use_thumbnail: bool = option(True, help="add a whole-frame thumbnail tile when a frame is tiled")
    resize: str = option(
        "auto",
        help="image resize: pil (reference), torch (on the model's device), auto",
        choices=("auto", "pil", "torch"),
    )
    max_frames: int = option(8, help="most frames one question may use", range=(1, 64))
    vision_backends: tuple[str, ...] = option(
        ("tensorrt", "onnxruntime", "torch"),
        help="vision encoder backends in fallback order",
        choices=VISION_BACKENDS,
    )
    question_batch: str = option(
        "auto",
        help="questions over the same frames (InternVL): tree runs the tokens they start with once (one "
        "forward with a tree attention mask); padded runs each question as a left-padded row; auto: tree "
        "where the attention kernel takes a custom mask (sdpa, eager), else padded",
        choices=QUESTION_BATCH_CHOICES,
    )
    measure_backends: bool = option(
        True,
        help="take an onnxruntime backend only where it is faster than torch eager: timed once per machine "
        "(one tile) at the first load and kept beside the exported graph; false: the first that runs",
    )
    shift_expert: str = option(
        "auto",
        help="a second checkpoint that answers a question when its frames look out of distribution to this "
        "one (OOD score above shift_expert_above); auto: the checkpoint's shift_expert/ folder where it has "
        "one; none: never",
    )
    shift_expert_above: float = option(
        1.0, help="OOD score above which the shift expert answers (1.0: the 99th percentile of the "
        "checkpoint's familiar frames)", range=(0.0, None)
    )
    trust_remote_code: bool = option(False, help="allow checkpoint Python code (original InternVL2); unsafe")
    max_new_tokens: int = option(32, help="generation budget for open questions", range=(1, 1024))
    cache_bytes: int = option(
        256 << 20, help="vision-embedding LRU cache size in bytes (0 disables)", range=(0, None)
    )
    answer_prefix: str = option("`", help="assistant text forced before closed-set scoring (the backtick)")
    number_beam: int = option(
        16,
        help="distances and depths: digit prefixes kept per level to score the whole value distribution "
        "and answer the value likeliest within the 20 % tolerance (InternVL); 0: greedy digits",
        range=(0, 1024),
    )
    max_question_chars: int = option(4096, help="longer questions are rejected", range=(1, 1_000_000))
    context_tokens: int = option(
        0, help="token budget per prompt; 0: the model's max positions", range=(0, None)
    )
