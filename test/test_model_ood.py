"""Out-of-distribution statistics: fit, score, save/load, AUROC, against hand-made data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_mllm_ros.model.ood import OOD_FILE, FeatureStats, auroc, fit_feature_stats, frame_descriptor


def familiar(n: int, seed: int = 0, dim: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.1, dim)  # a few dominant axes, like real features
    return rng.normal(size=(n, dim)) * scales + 5.0


def test_descriptor_is_mean_and_spread_over_tokens() -> None:
    embeds = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(frame_descriptor(embeds), [2.0, 4.0, 1.0, 2.0])


def test_familiar_frames_score_near_one_at_the_quantile_and_shifted_ones_far_above() -> None:
    stats = fit_feature_stats(familiar(2000), components=8, quantile=0.99)
    fresh = stats.score(familiar(4000, seed=1))
    assert 0.97 <= (fresh <= 1.0).mean() <= 1.0  # the held-out threshold holds on new familiar frames
    shifted = familiar(200, seed=2)
    shifted[:, 20:] += 1.0  # a small change on axes the familiar frames barely use
    assert (stats.score(shifted) > 1.0).mean() > 0.95
    assert auroc(fresh, stats.score(shifted)) > 0.99


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    stats = fit_feature_stats(familiar(100), components=4)
    assert FeatureStats.load(tmp_path) is None  # a checkpoint without statistics
    assert stats.save(tmp_path).name == OOD_FILE
    loaded = FeatureStats.load(tmp_path)
    x = familiar(10, seed=3)
    np.testing.assert_allclose(loaded.score(x), stats.score(x), rtol=1e-5)
    assert (loaded.n_frames, loaded.quantile) == (100, 0.99)


def test_auroc_by_hand() -> None:
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert auroc(np.array([0.1, 0.3]), np.array([0.2, 0.3])) == pytest.approx((1 + 0 + 1 + 0.5) / 4)


def test_too_few_frames_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        fit_feature_stats(familiar(3))


def _frames(n: int, seed: int, style: str) -> list[np.ndarray]:
    """Familiar frames: grey table, coloured squares; unfamiliar: saturated stripes of another look."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        if style == "familiar":
            img = np.full((64, 64, 3), 120, np.uint8)
            x, y = rng.integers(0, 48, size=2)
            img[y:y + 16, x:x + 16] = rng.integers(0, 255, size=3)
        else:
            img = np.zeros((64, 64, 3), np.uint8)
            img[:, ::4] = rng.integers(0, 255, size=3)
            img[::3] = rng.integers(0, 255, size=3)
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spatial_mllm_ros.model.factory import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("ood") / "tiny")


def test_cli_fits_statistics_and_answers_carry_the_score(checkpoint: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    import cv2

    from spatial_mllm_ros.cli import main
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

    for style, n in (("familiar", 120), ("unfamiliar", 30), ("familiar_test", 30)):
        folder = tmp_path / style
        folder.mkdir()
        for k, img in enumerate(_frames(n, seed=len(style), style=style.split("_")[0])):
            cv2.imwrite(str(folder / f"{k:03d}.png"), img[..., ::-1])
    before = SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu"))
    assert before.ask(_frames(2, 9, "familiar"), "Did the camera move left?").ood_score is None
    assert main(["ood", "fit", "--checkpoint", str(checkpoint), str(tmp_path / "familiar")]) == 0
    assert (checkpoint / OOD_FILE).is_file()
    assert main(["ood", "auroc", "--checkpoint", str(checkpoint), "--familiar",
                 str(tmp_path / "familiar_test"), "--unfamiliar", str(tmp_path / "unfamiliar")]) == 0
    value = float(capsys.readouterr().out.split("AUROC ")[1].split()[0])
    assert value > 0.9  # even a random tiny tower tells stripes from a grey table
    model = SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu"))
    familiar = model.ask(_frames(2, 11, "familiar"), "Did the camera move left?")
    unfamiliar = model.ask(_frames(2, 12, "unfamiliar"), "Did the camera move left?")
    assert familiar.ood_score is not None and unfamiliar.ood_score > familiar.ood_score
    assert "ood_score" in familiar.to_dict()


def test_checkpoint_temperature_softens_confidence_without_changing_answers(checkpoint: Path) -> None:
    from spatial_mllm_ros.model.calibration import Calibration, save_calibration
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

    frames = _frames(2, 13, "familiar")
    questions = ["Did the camera move left?", "Did the gripper move up or down?"]
    config = ModelConfig(checkpoint=str(checkpoint), device="cpu")
    plain = SpatialModel.load(config).ask_many(frames, questions)
    save_calibration(Calibration(temperature=4.0), checkpoint)
    try:
        soft = SpatialModel.load(config).ask_many(frames, questions)
    finally:
        (checkpoint / "calibration.json").unlink()
    for a, b in zip(plain, soft):
        assert a.value == b.value
        n = len(a.probabilities)
        assert abs(b.confidence - 1 / n) < abs(a.confidence - 1 / n) or a.confidence == pytest.approx(1 / n)
