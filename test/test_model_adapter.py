"""A peft LoRA adapter (the paper's LLM-only LoRA) on a tiny InternVL base: merged and unmerged agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText

from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.errors import ModelLoadError
from spatial_mllm_ros.model.factory import TinyShape, make_tiny_model
from spatial_mllm_ros.model.runtime import SpatialModel


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora")
    base = make_tiny_model(root / "base", "internvl", seed=4)
    model = AutoModelForImageTextToText.from_pretrained(base, local_files_only=True)
    config = LoraConfig(
        r=16, lora_alpha=32, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )  # random B: the adapter visibly changes the answer
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(root / "adapter")
    return base, root / "adapter"


def test_adapter_merged_and_unmerged(base_and_adapter: tuple[Path, Path]) -> None:
    base, adapter = base_and_adapter
    frames = [np.random.default_rng(i).integers(0, 256, (96, 128, 3), dtype=np.uint8) for i in range(2)]
    q = "Did the camera move left or right?"
    answers = {}
    for name, kw in {
        "base": {},
        "merged": {"adapter": str(adapter)},
        "unmerged": {"adapter": str(adapter), "merge_adapter": False},
    }.items():
        m = SpatialModel.load(ModelConfig(checkpoint=str(base), vision_backends=("torch",), **kw))
        answers[name] = m.ask(frames, q).probabilities
    assert answers["merged"]["left"] == pytest.approx(answers["unmerged"]["left"], abs=1e-5)
    assert abs(answers["merged"]["left"] - answers["base"]["left"]) > 1e-4


def test_adapter_for_another_base_is_a_load_error(
    base_and_adapter: tuple[Path, Path], tmp_path: Path
) -> None:
    _, adapter = base_and_adapter
    other = make_tiny_model(tmp_path / "q", "qwen2_5_vl")
    with pytest.raises(ModelLoadError, match="trained on a internvl model"):
        SpatialModel.load(
            ModelConfig(checkpoint=str(other), adapter=str(adapter), vision_backends=("torch",))
        )
    wider = make_tiny_model(tmp_path / "w", "internvl", shape=TinyShape(hidden=96, intermediate=192))
    with pytest.raises(ModelLoadError, match="does not fit"):
        SpatialModel.load(
            ModelConfig(checkpoint=str(wider), adapter=str(adapter), vision_backends=("torch",))
        )
