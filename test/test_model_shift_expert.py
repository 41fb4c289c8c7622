"""The shift expert: a second checkpoint answers when the frames look out of distribution to the first.

Real tiny InternVL models (random weights, two seeds) and OOD statistics fitted on frames of one look.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.conventions import AnswerStage, QuestionKind
from spatial_mllm_ros.model.config import SHIFT_EXPERT_DIR, ModelConfig
from spatial_mllm_ros.model.errors import ModelLoadError
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.model.ood import fit_feature_stats
from spatial_mllm_ros.model.runtime import SpatialModel

QUESTIONS = [Question("Did the camera move left?", kind=QuestionKind.YES_NO),
             Question("Which way did the gripper move?", kind=QuestionKind.DIRECTION,
                      options=("left", "right", "up", "down", "forward", "backward"))]


def familiar(i: int) -> np.ndarray:
    """Frames of the look the OOD statistics are fitted on: smooth gradients, shifted per frame."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([(x * 3 + i) % 256, (y * 4 + 2 * i) % 256, np.full_like(x, 90 + i % 40)],
                    -1).astype(np.uint8)


def unfamiliar(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base checkpoint with OOD statistics and a shift expert (another seed) in its shift_expert/."""
    base = make_tiny_model(tmp_path_factory.mktemp("pair") / "base", seed=0, max_tiles=1)
    make_tiny_model(base / SHIFT_EXPERT_DIR, seed=1, max_tiles=1)
    for ckpt in (base, base / SHIFT_EXPERT_DIR):  # each its own statistics, as shipped
        alone = SpatialModel.load(ModelConfig(checkpoint=str(ckpt), device="cpu", shift_expert="none"))
        descriptors = alone.frame_descriptors([familiar(i) for i in range(0, 160, 2)])
        fit_feature_stats(descriptors, components=4).save(ckpt)
        alone.close()
    return base


def load(checkpoint: Path, **kw: object) -> SpatialModel:
    return SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu", max_tiles=1, **kw))


def summary(answers: list) -> list:
    return [(a.value, a.probabilities, a.ood_score) for a in answers]


def test_unfamiliar_frames_go_to_the_expert_familiar_ones_stay(pair: Path) -> None:
    model, base, expert = load(pair), load(pair, shift_expert="none"), load(pair / SHIFT_EXPERT_DIR)
    try:
        assert model.expert is not None and base.expert is None
        seen = [familiar(21), familiar(51)]  # not among the fitted frames (even ones), same look
        odd = [unfamiliar(0), unfamiliar(1)]
        assert model.ood_score(model.encode_frames(seen, ["s0", "s1"])[0]) <= 1.0
        assert model.ood_score(model.encode_frames(odd, ["o0", "o1"])[0]) > 1.0
        assert summary(model.ask_many(seen, QUESTIONS)) == summary(base.ask_many(seen, QUESTIONS))
        assert model.expert_answers == 0
        stages: list = []
        routed = model.ask_many(odd, QUESTIONS, on_stage=stages.append)
        assert stages == [AnswerStage.VISION, AnswerStage.LANGUAGE]  # each told once
        assert summary(routed) == summary(expert.ask_many(odd, QUESTIONS))  # its confidences, its OOD score
        assert routed[0].ood_score != model.ood_score(model.encode_frames(odd, ["o0", "o1"])[0])
        assert summary(routed) != summary(base.ask_many(odd, QUESTIONS))
        assert model.expert_answers == len(QUESTIONS)
        timing = model.last_timing
        assert timing.questions == len(QUESTIONS) and timing.total_ms >= timing.vision_ms + timing.language_ms
    finally:
        for m in (model, base, expert):
            m.close()


@pytest.mark.parametrize("above, routed", [(0.0, True), (1e9, False)])
def test_the_threshold_decides(pair: Path, above: float, routed: bool) -> None:
    model = load(pair, shift_expert_above=above)
    try:
        model.ask_many([familiar(7), unfamiliar(7)], QUESTIONS[:1])
        assert model.expert_answers == (1 if routed else 0)
    finally:
        model.close()


def test_an_expert_needs_ood_statistics_to_route_by(pair: Path, tmp_path: Path) -> None:
    bare = make_tiny_model(tmp_path / "bare", seed=2, max_tiles=1)
    alone = load(bare)
    assert alone.expert is None  # auto: no shift_expert/ folder, no expert
    alone.close()
    with pytest.raises(ModelLoadError, match="no OOD statistics.*ood fit"):
        load(bare, shift_expert=str(pair / SHIFT_EXPERT_DIR))


def test_calibration_is_saved_for_one_model_only(pair: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from spatial_mllm_ros.cli import main

    assert main(["evaluate", "--checkpoint", str(pair), "--benchmark", str(tmp_path),
                 "--fit-temperature", "x", "--save-calibration"]) == 1
    assert "evaluate the checkpoint alone (--shift-expert none)" in capsys.readouterr().err
    assert not (pair / "calibration.json").exists()
