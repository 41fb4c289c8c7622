"""`spatial-mllm ask`: one multi-frame spatial question from image files, answered by a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.conventions import QuestionKind
from spatial_mllm_ros.model.config import VISION_BACKENDS, ModelConfig
from spatial_mllm_ros.model.errors import FrameError


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3 (FrameError naming the file when it cannot)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise FrameError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise FrameError(f"cannot read image {path}: {exc}") from exc


def _run(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.model.runtime import SpatialModel

    images = [read_image(p) for p in args.image]
    config = ModelConfig(
        checkpoint=args.checkpoint,
        device=args.device,
        max_tiles=args.max_tiles,
        vision_backends=tuple(args.backend or ModelConfig().vision_backends),
        measure_backends=not args.backend,  # backends named here are taken whatever their speed
        adapter=args.adapter,
        max_new_tokens=args.max_new_tokens,
        number_beam=args.number_beam,
    )
    model = SpatialModel.load(config)
    kind = QuestionKind(args.kind) if args.kind else None
    answer = model.ask(images, Question(args.question, kind=kind), keys=args.image)
    t = model.last_timing
    if args.json:
        print(
            json.dumps(
                {
                    **answer.to_dict(),
                    "latency_ms": t.total_ms,
                    "vision_ms": t.vision_ms,
                    "language_ms": t.language_ms,
                    "backend": model.backend,
                }
            )
        )
        return 0
    conf = f"{answer.confidence:.3f}" if answer.confidence is not None else "n/a (generated)"
    print(f"answer:     {answer.raw}")
    print(
        f"value:      {answer.value!r}"
        + (f" {answer.unit}" if answer.unit else "")
        + f"  [{answer.kind.value}]"
    )
    numeric = isinstance(answer.value, int) and not isinstance(answer.value, bool)
    print(
        f"confidence: {conf}"
        + (" (that the truth is within 20 % of it)" if numeric and answer.probabilities else "")
    )
    if answer.probabilities:
        label = "likeliest:  " if numeric else "options:    "
        print(label + ", ".join(f"{k}={v:.3f}" for k, v in answer.probabilities.items()))
    print(
        f"latency:    {t.total_ms:.1f} ms (vision {t.vision_ms:.1f} ms via {model.backend}, "
        f"language {t.language_ms:.1f} ms)"
    )
    model.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ask` to the CLI."""
    p = sub.add_parser("ask", help="ask a spatial question about one or more image files")
    p.add_argument("question", help='e.g. "Did the camera move left or right?"')
    p.add_argument("--image", action="append", required=True, help="image file; repeat, oldest first")
    p.add_argument("--checkpoint", default="", help="checkpoint directory (default: the shipped model)")
    p.add_argument("--adapter", default="", help="LoRA adapter directory")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--max-tiles", type=int, default=6, help="InternVL tiles per frame")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument(
        "--number-beam",
        type=int,
        default=ModelConfig().number_beam,
        help="distances and depths: digit prefixes followed per level (0: greedy digits)",
    )
    p.add_argument(
        "--backend",
        action="append",
        default=None,
        choices=VISION_BACKENDS,
        help="vision backend, repeat for a fallback order, taken whatever its speed (default: tensorrt, "
        "onnxruntime, torch, onnxruntime only where it was timed faster than torch)",
    )
    p.add_argument("--kind", choices=[k.value for k in QuestionKind], help="answer kind (default: guessed)")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    p.set_defaults(func=_run, backend=None)
