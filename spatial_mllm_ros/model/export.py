"""Export the InternVL vision tower + projector to ONNX and check the graph against PyTorch.

The graph takes a dynamic number of tiles; the TensorRT backend builds its engine from it.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.model.encoder import VisionTower, onnx_paths, vision_fingerprint
from spatial_mllm_ros.model.errors import ExportError

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Where the graph went and how closely onnxruntime reproduces PyTorch."""

    path: Path
    max_abs_diff: float
    tiles_checked: tuple[int, ...]
    seconds: float


def _tile_size(model: Any) -> int:
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
    import time

    if model.config.model_type != "internvl":
        raise ExportError(f"ONNX export supports InternVL checkpoints, not {model.config.model_type}")
    start = time.perf_counter()
    graph, meta = onnx_paths(Path(checkpoint))
    graph.parent.mkdir(parents=True, exist_ok=True)
    tower = VisionTower(copy.deepcopy(model).float().cpu()).eval()
    size = _tile_size(model)
    example = torch.randn(2, 3, size, size)
    tiles = torch.export.Dim("tiles", min=1, max=256)
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                tower,
                (example,),
                dynamo=True,
                input_names=["pixel_values"],
                output_names=["features"],
                dynamic_shapes={"pixel_values": {0: tiles}},
                opset_version=opset,
                verbose=False,
            )
            program.save(str(graph))
    except Exception as exc:  # the exporter raises many types; report one
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    diff = compare_onnx(tower, graph, size, check_tiles)
    if diff > tolerance:
        raise ExportError(f"ONNX graph differs from PyTorch by {diff:.2e} (> {tolerance:.0e})")
    meta.write_text(
        json.dumps(
            {
                "fingerprint": vision_fingerprint(model),
                "tile_size": size,
                "max_abs_diff": diff,
                "opset": opset,
            },
            indent=2,
        )
        + "\n"
    )
    result = ExportResult(graph, diff, tuple(check_tiles), time.perf_counter() - start)
    log.info("exported %s (max abs diff vs PyTorch %.2e)", graph, diff)
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
