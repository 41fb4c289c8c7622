"""Slow checks (not in CI): a real-shape InternVL3-1B random model answers, torch.compile backend works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.factory import make_real_shape_model, make_tiny_model
from spatial_mllm_ros.model.preprocess import prepare_image
from spatial_mllm_ros.model.runtime import SpatialModel
from spatial_mllm_ros.model.vision import TorchBackend


@pytest.mark.slow
def test_internvl3_1b_shape_answers() -> None:
    model, tok = make_real_shape_model("internvl3-1b", device="cpu", dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    assert 0.75e9 < n < 0.85e9
    sm = SpatialModel.from_model(model, tok, ModelConfig(max_tiles=1, vision_backends=("torch",)))
    frames = [np.random.default_rng(i).integers(0, 256, (448, 448, 3), dtype=np.uint8) for i in range(2)]
    ans = sm.ask(frames, "Did the camera move left or right?")
    assert sum(ans.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(np.isfinite(v) for v in ans.probabilities.values())


@pytest.mark.slow
def test_torch_compile_backend_matches_eager(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "t", "internvl")
    m = SpatialModel.load(ModelConfig(checkpoint=str(d), vision_backends=("torch-compile",)))
    assert m.backend == "torch-compile"
    img = prepare_image(np.zeros((120, 160, 3), np.uint8), m.spec)
    compiled = m.vision.encode([img])[0].embeds
    eager = TorchBackend(m.model, "internvl").encode([img])[0].embeds
    assert (compiled - eager).abs().max().item() < 1e-4
    assert m.backend == "torch-compile"  # the compiled graph ran (no eager fallback)
