"""`spatial-mllm export-vision`: export the vision tower + projector to ONNX, or build a TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.model.config import ModelConfig, shift_expert_path
    from spatial_mllm_ros.model.loading import resolve_checkpoint

    root = resolve_checkpoint(ModelConfig(checkpoint=args.checkpoint))
    expert = shift_expert_path("auto", root)  # it encodes its own frames: its tower is exported too
    for path in [root] + ([expert] if expert else []):
        _export(path, args)
    return 0


def _export(path: Path, args: argparse.Namespace) -> None:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.export import export_onnx
    from spatial_mllm_ros.model.loading import load

    loaded = load(ModelConfig(checkpoint=str(path), device="cpu", dtype="float32"))
    result = export_onnx(loaded.model, loaded.checkpoint, opset=args.opset)
    print(f"checkpoint:    {path}")
    print(f"onnx:          {result.path}")
    tiles = ", ".join(map(str, result.tiles_checked))
    print(f"max abs diff:  {result.max_abs_diff:.3e} vs PyTorch (tiles {tiles})")
    print(f"onnxruntime:   {result.ort_path} (fused attention; max abs diff {result.ort_max_abs_diff:.3e})")
    print(f"export time:   {result.seconds:.1f} s")
    if args.format == "onnx":
        return
    from spatial_mllm_ros.model.vision import TensorRTBackend

    gpu = load(ModelConfig(checkpoint=str(path), device=args.device))
    backend = TensorRTBackend(gpu.model, gpu.family, gpu.checkpoint, max_tiles=args.max_tiles)
    print(f"tensorrt:      {backend.path}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export-vision` to the CLI."""
    p = sub.add_parser("export-vision", help="export the vision encoder to ONNX or a TensorRT fp16 engine")
    p.add_argument("--checkpoint", default="",
                   help="checkpoint directory (default: the shipped model); a shift_expert/ in it too")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--device", default="cuda", help="GPU for the TensorRT build")
    p.add_argument("--max-tiles", type=int, default=64, help="largest tile batch the engine accepts")
    p.set_defaults(func=_run)
