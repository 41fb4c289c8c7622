"""Reward quality of the shipped model on held-out sim episodes (slow; skipped until the model ships)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spatial_mllm_ros.reward import (
    AnnotateConfig,
    Sampling,
    Split,
    annotate_to_dir,
    evaluate_dir,
    load_rubric,
)
from spatial_mllm_ros.reward.evaluate import heldout_sim_bags

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.slow
def test_shipped_model_rewards_separate_success_from_failure(tmp_path: Path) -> None:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.factory import default_checkpoint

    if not (default_checkpoint() / "config.json").exists():
        pytest.skip(f"the shipped model is not at {default_checkpoint()} yet")
    rubric = load_rubric(CONFIG / "rubric_sim_push_left.yaml")
    config = AnnotateConfig(rubric=rubric, model=ModelConfig(max_tiles=1), split=Split("marker"),
                            sampling=Sampling(count=8))
    annotate_to_dir(heldout_sim_bags(tmp_path, 16), config, tmp_path / "out", show_progress=False)
    ev = evaluate_dir(tmp_path / "out", rubric)
    assert ev.n_success == ev.n_failure == 8
    assert ev.direction_agreement is not None and ev.direction_agreement >= 0.9
    assert ev.voc_success is not None and ev.voc_failure is not None
    assert ev.voc_success >= 0.8 and ev.voc_success > ev.voc_failure + 0.3
    assert ev.auc is not None and ev.auc >= 0.9
