"""Bad input to the model runtime: each case is a clear typed error naming the bad thing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    FrameError,
    ModelError,
    ModelLoadError,
    QuestionError,
    TooManyFramesError,
    UnknownFamilyError,
    UnsafeCheckpointError,
)
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.model.runtime import SpatialModel


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), "internvl")


@pytest.fixture(scope="module")
def model(tiny: Path) -> SpatialModel:
    return SpatialModel.load(
        ModelConfig(checkpoint=str(tiny), max_tiles=1, max_frames=4, vision_backends=("torch",))
    )


def _copy(tiny: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny, dst)
    return dst


def _load(path: Path, **kw: object) -> SpatialModel:
    return SpatialModel.load(ModelConfig(checkpoint=str(path), vision_backends=("torch",), **kw))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="not found: .*nope"):
        _load(tmp_path / "nope")


def test_missing_config_and_weights(tiny: Path, tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointNotFoundError, match="weights file"):
        _load(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        _load(d)


def test_unknown_family(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownFamilyError, match="'llava'"):
        _load(tiny, family="llava")
    d = _copy(tiny, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "blip-2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownFamilyError, match="blip-2"):
        _load(d)
    with pytest.raises(ModelLoadError, match="qwen2_5_vl"):
        _load(tiny, family="qwen2_5_vl")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors(tiny: Path, tmp_path: Path, damage: str) -> None:
    d = _copy(tiny, tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x07" * 4096, "empty": b""}[damage])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        _load(d)


def test_pickle_weights_refused(tiny: Path, tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pickled"):
        _load(d)


def test_remote_code_needs_opt_in(tiny: Path, tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "internvl_chat"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeCheckpointError, match="trust_remote_code"):
        _load(d)


def test_missing_adapter(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="adapter_config.json"):
        _load(tiny, adapter=str(tmp_path / "lora"))


def test_transformers_older_than_the_tested_one_is_refused() -> None:
    """5.17 scored answers differently without an error; the bound is the same in requirements/base.txt."""
    from spatial_mllm_ros.model.loading import MIN_TRANSFORMERS, check_transformers

    with pytest.raises(ModelLoadError, match=r"transformers 5\.17\.0 is older than 5\.24"):
        check_transformers("5.17.0")
    check_transformers("5.24.0")
    check_transformers()  # the installed one
    base = (Path(__file__).resolve().parents[1] / "requirements" / "base.txt").read_text().splitlines()
    assert f"transformers>={MIN_TRANSFORMERS},<6" in base


def test_cuda_without_gpu(tiny: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        _load(tiny, device="cuda")


FRAME = np.zeros((64, 64, 3), np.uint8)


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        ([], FrameError, "zero frames"),
        ([FRAME.astype(np.float32)], FrameError, "frame 0: dtype float32"),
        ([FRAME, FRAME[:, :, 0]], FrameError, "frame 1: shape"),
        ([FRAME, FRAME[:, :, :1].repeat(4, axis=2)], FrameError, "frame 1: shape"),
        (["a.png"], FrameError, "numpy array"),
        ([FRAME] * 5, TooManyFramesError, "max_frames=4"),
    ],
)
def test_bad_frames(model: SpatialModel, frames: list, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        model.ask(frames, "Did the camera move left or right?")


@pytest.mark.parametrize(
    ("question", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("x" * 10_000_000, "10000000 characters"),
        (None, "text"),
        (42, "text"),
    ],
)
def test_bad_questions(model: SpatialModel, question: object, match: str) -> None:
    with pytest.raises(QuestionError, match=match):
        model.ask([FRAME], question)  # type: ignore[arg-type]


def test_too_many_frames_for_context(tiny: Path) -> None:
    m = _load(tiny, max_tiles=6, context_tokens=600)
    big = np.zeros((480, 1280, 3), np.uint8)
    with pytest.raises(TooManyFramesError, match="context allows 600"):
        m.ask([big, big, big], "Did the camera move left or right?")
    assert m.ask([FRAME], "Did the camera move left or right?").value in ("left", "right")


def test_mismatched_keys(model: SpatialModel) -> None:
    with pytest.raises(FrameError, match="keys"):
        model.ask([FRAME, FRAME], "Left or right?", keys=["only-one"])


def test_errors_share_a_base() -> None:
    assert issubclass(TooManyFramesError, ModelError) and issubclass(QuestionError, ValueError)


def test_closed_model_says_so(tiny: Path) -> None:
    m = _load(tiny)
    m.close()
    with pytest.raises(ModelError, match="closed"):
        m.ask([FRAME], "Left or right?")
