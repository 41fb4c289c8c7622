"""The shipped SpatialMLLM-tiny: size limits, offline reload through the runtime, and its recorded accuracy
reproduced on the committed benchmark subset (test/data/spatialmllm_tiny_subset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatial_mllm_ros.model.factory import default_checkpoint
from spatial_mllm_ros.multispa.evaluate import answer_with_model, load_benchmark, score_answers

SUBSET = Path(__file__).parent / "data" / "spatialmllm_tiny_subset"


def test_shipped_model_fits_the_limits() -> None:
    ckpt = default_checkpoint()
    weights = ckpt / "model.safetensors"
    assert weights.is_file(), f"shipped model missing at {ckpt}"
    assert weights.stat().st_size <= 40 * 2**20
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model_type"] == "internvl"
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.py"))  # safetensors only, no remote code
    assert (ckpt / "MODEL_CARD.md").is_file()


def test_shipped_model_reproduces_its_recorded_accuracy_offline() -> None:
    expected = json.loads((SUBSET / "expected.json").read_text())
    bench = load_benchmark(SUBSET)
    answers = answer_with_model(bench, default_checkpoint(), device="cpu", progress=False)
    scores = score_answers(bench, answers)
    got = {k: [s.correct, s.total] for k, s in scores.subtasks.items()}
    assert got == expected["subtasks"]
    assert scores.overall == pytest.approx(expected["overall"])


@pytest.mark.slow
def test_quick_recipe_runs_end_to_end(tmp_path: Path) -> None:
    """`spatial-mllm train --recipe tiny --quick`: render, three stages, save, benchmark (a few minutes)."""
    from spatial_mllm_ros.cli import main

    assert main(["train", "--recipe", "tiny", "--quick", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "benchmark" / "benchmark.jsonl").is_file()
    assert (tmp_path / "loss.png").is_file()
