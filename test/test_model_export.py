"""ONNX export of the vision encoder, backend selection/fallback, and the ask / export-vision CLIs."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.model.config import SHIFT_EXPERT_DIR, ModelConfig
from spatial_mllm_ros.model.encoder import engine_path, onnx_paths, ort_path
from spatial_mllm_ros.model.errors import BackendUnavailableError
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.model.loading import load
from spatial_mllm_ros.model.preprocess import prepare_image
from spatial_mllm_ros.model.runtime import SpatialModel
from spatial_mllm_ros.model.speed import SpeedCheck, machine_key
from spatial_mllm_ros.model.vision import TensorRTBackend, TorchBackend, select_backend


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny InternVL checkpoint exported through the CLI (the export-vision CLI test)."""
    d = make_tiny_model(tmp_path_factory.mktemp("exp"), "internvl", seed=3)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export-vision", "--checkpoint", str(d), "--format", "onnx"])
    assert rc == 0
    return d, buf.getvalue()


def test_export_vision_cli_prints_diff(exported: tuple[Path, str]) -> None:
    d, out = exported
    graph, meta = onnx_paths(d)
    assert graph.is_file() and graph.parent == d / "vision_export" and ort_path(d).is_file()
    assert "max abs diff" in out and "checkpoint:" in out
    diff = float(out.split("max abs diff:")[1].split()[0])
    assert diff < 1e-4
    info = json.loads(meta.read_text())
    assert info["max_abs_diff"] == pytest.approx(diff, rel=1e-3) and info["ort_max_abs_diff"] < 1e-4
    ops = {node.op_type for node in onnx.load(str(ort_path(d))).graph.node}
    assert {"Attention", "Gelu"} <= ops  # fused by the exporter (opset 23) for onnxruntime
    assert "Attention" not in {node.op_type for node in onnx.load(str(graph)).graph.node}  # TensorRT's


def test_export_vision_exports_a_shift_expert_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_tiny_model(tmp_path / "base", "internvl", seed=5, image_size=112, max_tiles=1)
    make_tiny_model(base / SHIFT_EXPERT_DIR, "internvl", seed=6, image_size=112, max_tiles=1)
    assert main(["export-vision", "--checkpoint", str(base), "--format", "onnx"]) == 0
    assert ort_path(base).is_file() and ort_path(base / SHIFT_EXPERT_DIR).is_file()
    assert capsys.readouterr().out.count("checkpoint:") == 2


def _save_timing(d: Path, backend: str, machine: str, backend_ms: float | None) -> None:
    """Pretend `backend` was timed on this machine at backend_ms against torch's 3 ms (None: never timed)."""
    _, meta = onnx_paths(d)
    info = json.loads(meta.read_text())
    info.pop("speed", None)
    if backend_ms is not None:
        info["speed"] = {backend: {machine: asdict(SpeedCheck(backend_ms, 3.0, 1, machine))}}
    meta.write_text(json.dumps(info))


def test_backend_rule_takes_torch_where_onnxruntime_is_measured_slower(
    exported: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = exported
    model = load(ModelConfig(checkpoint=str(d))).model
    machine = machine_key(model.device, model.dtype)
    try:
        _save_timing(d, "onnxruntime", machine, 9.0)
        with caplog.at_level(logging.INFO, logger="spatial_mllm_ros.model.vision"):
            backend, skipped = select_backend(("onnxruntime", "torch"), model, "internvl", d)
        assert backend.name == "torch"
        reason = skipped["onnxruntime"]
        assert "measured slower than torch eager: onnxruntime 9.0 ms vs torch 3.0 ms" in reason
        assert "vision backend onnxruntime skipped: measured slower" in caplog.text and machine in caplog.text
        backend, _ = select_backend(("onnxruntime", "torch"), model, "internvl", d, measure=False)
        assert backend.name == "onnxruntime"  # measure_backends: false takes the first that runs
        _save_timing(d, "onnxruntime", machine, 1.0)
        backend, skipped = select_backend(("onnxruntime", "torch"), model, "internvl", d)
        assert backend.name == "onnxruntime" and not skipped
        _save_timing(d, "onnxruntime", machine, None)  # never timed here: timed now, once, and kept
        backend, _ = select_backend(("onnxruntime", "torch"), model, "internvl", d)
        saved = json.loads(onnx_paths(d)[1].read_text())["speed"]["onnxruntime"][machine]
        assert saved["tiles"] == 1 and saved["backend_ms"] > 0 and saved["torch_ms"] > 0
        assert backend.name == ("onnxruntime" if saved["backend_ms"] < saved["torch_ms"] else "torch")
    finally:
        _save_timing(d, "onnxruntime", machine, None)


def test_int8_backend_loads_and_answers(exported: tuple[Path, str]) -> None:
    d, _ = exported
    m = SpatialModel.load(
        ModelConfig(checkpoint=str(d), vision_backends=("onnxruntime-int8",), measure_backends=False)
    )
    assert m.backend == "onnxruntime-int8" and ort_path(d, "int8").is_file()
    ops = {node.op_type for node in onnx.load(str(ort_path(d, "int8"))).graph.node}
    assert "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    prepared = [prepare_image(f, m.spec) for f in frames]
    for a, b in zip(m.vision.encode(prepared), TorchBackend(m.model, "internvl").encode(prepared)):
        assert (a.embeds - b.embeds).abs().max() < 0.05 * b.embeds.abs().max()  # int8 weights: close
    ans = m.ask(frames, "Did the camera move left or right?")
    assert ans.value in ("left", "right") and sum(ans.probabilities.values()) == pytest.approx(1.0)


def test_onnxruntime_backend_matches_torch(exported: tuple[Path, str]) -> None:
    d, _ = exported
    m = SpatialModel.load(
        ModelConfig(
            checkpoint=str(d), max_tiles=4, vision_backends=("onnxruntime", "torch"), measure_backends=False
        )
    )
    assert m.backend == "onnxruntime"
    assert m.vision.session.get_session_options().intra_op_num_threads == torch.get_num_threads()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    prepared = [prepare_image(f, m.spec) for f in frames]
    ort_feats = m.vision.encode(prepared)
    torch_feats = TorchBackend(m.model, "internvl").encode(prepared)
    assert [f.embeds.shape for f in ort_feats] == [f.embeds.shape for f in torch_feats]
    for a, b in zip(ort_feats, torch_feats):
        assert (a.embeds - b.embeds).abs().max().item() < 1e-4
    ans = m.ask(frames, "Did the camera move left or right?")
    assert sum(ans.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_stale_graph_is_not_used(exported: tuple[Path, str], tmp_path: Path) -> None:
    d, _ = exported
    loaded = load(ModelConfig(checkpoint=str(d)))
    with torch.no_grad():
        loaded.model.model.multi_modal_projector.linear_1.weight.add_(1.0)  # weights changed since export
    backend, skipped = select_backend(("onnxruntime",), loaded.model, "internvl", d)
    assert backend.name == "torch" and "other weights" in skipped["onnxruntime"]


def test_tensorrt_missing_falls_back_with_reason(exported: tuple[Path, str]) -> None:
    if importlib.util.find_spec("tensorrt") is not None or torch.cuda.is_available():
        pytest.skip("TensorRT/GPU present: the real build is exercised on the robot")
    d, _ = exported
    m = SpatialModel.load(
        ModelConfig(
            checkpoint=str(d), vision_backends=("tensorrt", "onnxruntime", "torch"), measure_backends=False
        )
    )
    assert m.backend == "onnxruntime"
    assert "tensorrt is not installed" in m.skipped_backends["tensorrt"]
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        TensorRTBackend(m.model, "internvl", d)


def test_engine_cache_key_names_trt_and_gpu(tmp_path: Path) -> None:
    a = engine_path(tmp_path, "10.3.0", "Orin (nvgpu)")
    b = engine_path(tmp_path, "10.7.0", "Orin (nvgpu)")
    c = engine_path(tmp_path, "10.3.0", "NVIDIA H100 80GB HBM3")
    assert a != b and a != c and a.parent == tmp_path / "vision_export"
    assert a.name == "vision_trt10.3.0_orin-nvgpu_fp16.engine"


def test_ask_cli(exported: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = exported
    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    rc = main(
        [
            "ask",
            "--checkpoint",
            str(d),
            "--image",
            paths[0],
            "--image",
            paths[1],
            "Did the camera move left or right?",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("answer:", "value:", "confidence:", "latency:"):
        assert label in out
    assert "left=" in out and "right=" in out
    rc = main(
        [
            "ask",
            "--checkpoint",
            str(d),
            "--image",
            paths[0],
            "--json",
            "--backend",
            "torch",
            "How far did the camera move?",
        ]
    )
    row = json.loads(capsys.readouterr().out)
    assert rc == 0 and row["kind"] == "distance" and row["backend"] == "torch" and "latency_ms" in row
    rc = main(["ask", "--checkpoint", str(d), "--image", str(tmp_path / "missing.png"), "Left or right?"])
    assert rc == 1 and "image file not found" in capsys.readouterr().err
