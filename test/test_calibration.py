"""ECE, temperature scaling, chance, constant-answer baselines and the Wilson rule: hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.conventions import DIRECTIONS, YES_NO, QuestionKind
from spatial_mllm_ros.model.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    apply_temperature,
    load_calibration,
    save_calibration,
)
from spatial_mllm_ros.multispa.baselines import Baseline, beats_baseline, chance_level, constant_baseline
from spatial_mllm_ros.multispa.calibration import (
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    temperature_nll,
)

K = QuestionKind


def test_ece_weighs_each_bins_gap_by_its_share() -> None:
    # bin 9: 0.95, 0.95 (1 of 2 right): |0.5 - 0.95| x 2; bin 5: 0.55, 0.55 (both right): |1 - 0.55| x 2;
    # bin 1: 0.15 (wrong): |0 - 0.15| x 1; (0.9 + 0.9 + 0.15) / 5 = 0.39
    conf = [0.95, 0.95, 0.55, 0.55, 0.15]
    assert expected_calibration_error(conf, [True, False, True, True, False]) == pytest.approx(0.39)
    # 1.0 shares the last bin with 0.9: |0.5 - 0.95| = 0.45 (a bin of its own would give 0.55)
    assert expected_calibration_error([1.0, 0.9], [False, True]) == pytest.approx(0.45)
    # 0.1 opens bin 1 rather than closing bin 0: |0 - 0.05| x 1 + |1 - 0.1| x 1 over 2 = 0.475
    assert expected_calibration_error([0.05, 0.1], [False, True]) == pytest.approx(0.475)
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([], []) is None
    with pytest.raises(CalibrationError):
        expected_calibration_error([0.5], [True, False])


def test_temperature_rescales_without_reordering() -> None:
    # sqrt(0.8) : sqrt(0.2) = 2 : 1
    assert apply_temperature({"a": 0.8, "b": 0.2}, 2.0) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    # 0.64 : 0.04 = 16 : 1
    assert apply_temperature({"a": 0.8, "b": 0.2}, 0.5) == pytest.approx({"a": 16 / 17, "b": 1 / 17})
    unchanged = apply_temperature({"a": 0.7, "b": 0.3, "c": 0.0}, 1.0)
    assert unchanged == pytest.approx({"a": 0.7, "b": 0.3, "c": 0.0})
    with pytest.raises(CalibrationError):
        apply_temperature({"a": 1.0}, 0.0)
    assert temperature_nll([[0.5, 0.5], [0.2, 0.8]], [0, 1], 1.0) == pytest.approx(
        (np.log(2) - np.log(0.8)) / 2
    )


def test_fit_recovers_the_temperature_that_made_the_labels() -> None:
    """Labels drawn from softmax(z / 2.5) while the model reports softmax(z): the fit finds ~2.5."""
    rng = np.random.default_rng(7)
    t0, probabilities, labels, confidence, right = 2.5, [], [], [], []
    for n in range(6000):
        z = rng.normal(0.0, 4.0, size=(2, 4, 6)[n % 3])  # ragged: 2, 4 and 6 options
        truth = np.exp(z / t0) / np.exp(z / t0).sum()
        reported = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        label = int(rng.choice(len(z), p=truth))
        probabilities.append(reported.tolist())
        labels.append(label)
        confidence.append(reported.max())
        right.append(label == reported.argmax())
    calibration = fit_calibration(probabilities, labels, "synthetic")
    assert calibration.temperature == pytest.approx(t0, rel=0.06)
    assert calibration.nll_after < calibration.nll_before
    t = calibration.temperature
    rescaled = [max(apply_temperature(dict(enumerate(p)), t).values()) for p in probabilities]
    before, after = expected_calibration_error(confidence, right), expected_calibration_error(rescaled, right)
    assert before > 0.1 and after < 0.03  # overconfident before, calibrated after
    # already calibrated probabilities keep T = 1
    assert fit_temperature([[0.8, 0.2]] * 8 + [[0.2, 0.8]] * 2, [0] * 10) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(CalibrationError):
        fit_temperature([[0.5, 0.5]], [2])
    with pytest.raises(CalibrationError):
        fit_temperature([], [])


def test_calibration_is_saved_next_to_the_checkpoint_and_read_back(tmp_path: Path) -> None:
    assert load_calibration(tmp_path) is None  # none saved: probabilities stand as they are
    cal = Calibration(1.7, "heldout", 120, 0.61, 0.42)
    path = save_calibration(cal, tmp_path)
    assert path == tmp_path / CALIBRATION_FILE
    assert load_calibration(tmp_path) == cal
    assert cal.apply({"yes": 0.9, "no": 0.1}) == apply_temperature({"yes": 0.9, "no": 0.1}, 1.7)
    path.write_text('{"temperature": -1}')
    with pytest.raises(CalibrationError, match="positive"):
        load_calibration(tmp_path)
    path.write_text('{"temp": 1}')
    with pytest.raises(CalibrationError, match="not a calibration file"):
        load_calibration(tmp_path)


def test_chance_is_one_over_the_options_averaged_over_questions() -> None:
    # (1/2 + 1/6 + 1/2) / 3 = 7/18
    assert chance_level([("left", "right"), DIRECTIONS, YES_NO]) == pytest.approx(100 * 7 / 18)
    assert chance_level([("left", "right"), None]) is None  # an open question: no chance level
    assert chance_level([]) is None


def test_baseline_is_the_best_constant_answer_scored_by_the_metric() -> None:
    assert constant_baseline(K.DIRECTION, ["left", "left", "right", "left"]) == Baseline("left", 75.0)
    assert constant_baseline(K.YES_NO, ["no", "yes"]) == Baseline("no", 50.0)  # a tie: the first seen
    # zero is right for the two zero truths; for 5 mm it is 100 % off (the zero tolerance is for a zero truth)
    assert constant_baseline(K.DISTANCE, [0, 5, 0, 1000]) == Baseline("0", 50.0)
    assert constant_baseline(K.VECTOR, [[0, 0, 0], [100, 0, 0]]) == Baseline("[ 0 , 0 , 0 ]", 50.0)
    # the centre [500, 500]: within 5 % of the width for [520, 500], not for [900, 900]
    centre = constant_baseline(K.COORDINATE, [[500, 500], [520, 500], [900, 900]], [(64, 48)] * 3)
    assert centre == Baseline("[ 500 , 500 ]", pytest.approx(200 / 3))
    assert constant_baseline(K.DIRECTION, []) == Baseline("", 0.0)


def test_beating_the_baseline_means_the_wilson_lower_bound_is_above_it() -> None:
    # 20/20: lower bound (1 + z^2/40 - z sqrt(z^2/1600)) / (1 + z^2/20) = 83.89 %
    assert beats_baseline(20, 20, 83.0)
    assert not beats_baseline(20, 20, 84.0)
    # 6/10 is 10 points above a 50 % baseline, but its lower bound is 31.3 %: not beaten
    assert not beats_baseline(6, 10, 50.0)
    assert beats_baseline(6, 10, 31.0)
    assert not beats_baseline(0, 0, 0.0)


def test_ood_aware_fit_softens_unfamiliar_answers_only() -> None:
    """Familiar answers are as right as they say; unfamiliar ones are as sure but right half as often."""
    rng = np.random.default_rng(0)
    probabilities, labels, ood = [], [], []
    for k in range(4000):
        unfamiliar = k % 2 == 1
        sure = 0.9
        right = rng.random() < (sure if not unfamiliar else 0.5)
        probabilities.append([sure, 1 - sure])
        labels.append(0 if right else 1)
        ood.append(4.0 if unfamiliar else 0.5)
    plain = fit_calibration(probabilities, labels, "t")
    aware = fit_calibration(probabilities, labels, "t", ood)
    assert plain.ood_power == 0.0 and aware.ood_power > 0.0 and aware.nll_after < plain.nll_after
    assert abs(aware.apply({"a": 0.9, "b": 0.1}, 0.5)["a"] - 0.9) < 0.03  # familiar: kept
    assert abs(aware.apply({"a": 0.9, "b": 0.1}, 4.0)["a"] - 0.5) < 0.05  # unfamiliar: a coin
    assert Calibration(2.0, ood_power=1.0).temperature_for(None) == 2.0
    assert Calibration(2.0, ood_power=1.0).temperature_for(3.0) == 6.0
