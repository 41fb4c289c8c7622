"""The InternVL vision encoder as one module, and where its exported forms for a checkpoint live.

The PyTorch backend runs VisionTower; the exporter writes it as ONNX graphs (a portable one the TensorRT
backend builds an engine from, a fused one onnxruntime runs), all next to the checkpoint and valid only
for its vision weights.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import torch

EXPORT_DIRNAME = "vision_export"
ONNX_NAME = "vision.onnx"  # opset 18: portable, what TensorRT builds from
ONNX_META = "vision.onnx.json"
ORT_NAME = "vision.ort.onnx"  # opset 23, fused attention: what onnxruntime runs
DERIVED = {"int8": "vision.ort.int8.onnx", "fp16": "vision.ort.fp16.onnx"}  # made from ORT_NAME on first use


class VisionTower(torch.nn.Module):
    """InternVL vision tower + pixel shuffle + projector as one module: tiles -> (tiles, tokens, hidden)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model.model if hasattr(model, "model") else model
        cfg = model.config
        self.layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode a stack of tiles."""
        out = self.inner.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=self.layer,
            vision_feature_select_strategy=self.strategy,
            return_dict=True,
        )
        return out.pooler_output


def artifact_dir(checkpoint: Path) -> Path:
    """Where exported graphs/engines live: next to the checkpoint, or a user cache if it is read-only."""
    here = checkpoint / EXPORT_DIRNAME
    if os.access(checkpoint, os.W_OK):
        return here
    digest = hashlib.sha1(str(checkpoint.resolve()).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spatial_mllm_ros"
    return base / f"{checkpoint.name}-{digest}"


def vision_fingerprint(model: Any) -> str:
    """Hash the vision tower + projector weights: an exported graph is valid only for these."""
    h = hashlib.sha1()
    inner = model.model if hasattr(model, "model") else model
    for part in ("vision_tower", "multi_modal_projector"):
        for name, p in getattr(inner, part).named_parameters():
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(p.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def onnx_paths(checkpoint: Path) -> tuple[Path, Path]:
    """(graph, metadata) paths of the exported ONNX vision encoder of a checkpoint."""
    d = artifact_dir(checkpoint)
    return d / ONNX_NAME, d / ONNX_META


def ort_path(checkpoint: Path, form: str = "") -> Path:
    """Return the onnxruntime graph of a checkpoint: float32 (form ""), or its "int8" or "fp16" form."""
    return artifact_dir(checkpoint) / (DERIVED[form] if form else ORT_NAME)


def derived_paths(checkpoint: Path) -> list[Path]:
    """Every graph made from the onnxruntime graph (stale once the checkpoint is exported again)."""
    return [ort_path(checkpoint, form) for form in DERIVED]


def engine_path(checkpoint: Path, trt_version: str, gpu_name: str) -> Path:
    """TensorRT engines are specific to TensorRT version and GPU: the file name carries both."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return artifact_dir(checkpoint) / f"vision_trt{trt_version}_{gpu}_fp16.engine"
