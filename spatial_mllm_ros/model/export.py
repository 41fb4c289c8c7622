"""Export the InternVL vision tower + projector to ONNX and check the graphs against PyTorch.

One torch.export trace gives two graphs, both with a dynamic number of tiles:
- vision.onnx (opset 18): portable; the TensorRT backend builds its engine from it (TensorRT before
  10.14, JetPack 6's included, has no ONNX Attention operator).
- vision.ort.onnx (opset 23): what onnxruntime runs; the exporter writes each attention block as one
  Attention operator and each GELU as one Gelu, which onnxruntime fuses further (BiasGelu, LayerNorm)
  at session creation.
The int8 (CPU) and fp16 (CUDA) forms of the onnxruntime graph are derived from it on first use.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.model.encoder import (
    VisionTower,
    derived_paths,
    onnx_paths,
    ort_path,
    vision_fingerprint,
)
from spatial_mllm_ros.model.errors import ExportError

log = logging.getLogger(__name__)

ORT_OPSET = 23  # the first opset with Attention (and 20: Gelu)


@dataclass
class ExportResult:
    """Where the graphs went and how closely onnxruntime reproduces PyTorch."""

    path: Path
    max_abs_diff: float
    tiles_checked: tuple[int, ...]
    seconds: float
    ort_path: Path | None = None
    ort_max_abs_diff: float | None = None


def tile_size(model: Any) -> int:
    """Side in pixels of the vision tower's square tiles."""
    size = model.config.vision_config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def export_onnx(
    model: Any,
    checkpoint: Path,
    opset: int = 18,
    check_tiles: tuple[int, ...] = (1, 3),
    tolerance: float = 1e-4,
) -> ExportResult:
    """Export vision tower + projector (float32) to checkpoint's export dir; verify with onnxruntime."""
    if model.config.model_type != "internvl":
        raise ExportError(f"ONNX export supports InternVL checkpoints, not {model.config.model_type}")
    start = time.perf_counter()
    graph, meta = onnx_paths(Path(checkpoint))
    fast = ort_path(Path(checkpoint))
    graph.parent.mkdir(parents=True, exist_ok=True)
    for stale in derived_paths(Path(checkpoint)):  # made from the previous graph
        stale.unlink(missing_ok=True)
    tower = VisionTower(copy.deepcopy(model).float().cpu()).eval()
    size = tile_size(model)
    example = torch.randn(2, 3, size, size)
    tiles = torch.export.Dim("tiles", min=1, max=256)
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(tower, (example,), dynamic_shapes={"pixel_values": {0: tiles}})
            for path, version in ((graph, opset), (fast, max(opset, ORT_OPSET))):
                onnx_program = torch.onnx.export(
                    program,
                    dynamo=True,
                    input_names=["pixel_values"],
                    output_names=["features"],
                    opset_version=version,
                    verbose=False,
                )
                onnx_program.save(str(path))
    except Exception as exc:  # the exporter raises many types; report one
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    diffs = {path: compare_onnx(tower, path, size, check_tiles) for path in (graph, fast)}
    for path, diff in diffs.items():
        if diff > tolerance:
            raise ExportError(
                f"ONNX graph {path.name} differs from PyTorch by {diff:.2e} (> {tolerance:.0e})"
            )
    meta.write_text(
        json.dumps(
            {
                "fingerprint": vision_fingerprint(model),
                "tile_size": size,
                "max_abs_diff": diffs[graph],
                "opset": opset,
                "ort_max_abs_diff": diffs[fast],
                "ort_opset": max(opset, ORT_OPSET),
            },
            indent=2,
        )
        + "\n"
    )
    result = ExportResult(
        graph, diffs[graph], tuple(check_tiles), time.perf_counter() - start, fast, diffs[fast]
    )
    log.info("exported %s and %s (max abs diff vs PyTorch %.1e, %.1e)", graph, fast, *diffs.values())
    return result


def compare_onnx(
    tower: torch.nn.Module, graph: Path, size: int, tiles: tuple[int, ...] = (1, 3), seed: int = 0
) -> float:
    """Max abs difference between onnxruntime and PyTorch over random tiles of each given count."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in tiles:
        x = torch.randn(n, 3, size, size, generator=gen)
        with torch.no_grad():
            ref = tower(x).float().numpy()
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        worst = max(worst, float(abs(out - ref).max()))
    return worst


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the graph's weight MatMuls (CPU): int8 weights, activations per call.

    The attention products themselves stay float (they have no constant operand), as do LayerNorm and
    the patch convolution: the accuracy cost is measured on the benchmark (docs/performance.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(source),
        str(tmp),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
    )
    tmp.replace(target)
    log.info("wrote the int8 vision graph %s", target)
    return target


def convert_fp16(source: Path, target: Path) -> Path:
    """fp16 weights and activations for the CUDA provider, float32 inputs and outputs kept.

    Written the standard onnxruntime way (onnxruntime.transformers.float16); not run on the development
    machines (their onnxruntime has no CUDA provider).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    tmp = target.with_suffix(".tmp.onnx")
    onnx.save(half, str(tmp))
    tmp.replace(target)
    log.info("wrote the fp16 vision graph %s", target)
    return target
