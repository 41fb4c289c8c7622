"""The paper's metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from spatial_mllm_ros.conventions import (
    QuestionKind,
    best_numeric_answer,
    is_correct,
    numeric_correct,
    pixel_correct,
)
from spatial_mllm_ros.intervals import wilson_interval
from spatial_mllm_ros.multispa.metrics import TABLE2_ROWS, Scores, score_all, table2_row

K = QuestionKind


def test_exact_match_for_qualitative_and_choice() -> None:
    assert is_correct(K.DIRECTION, "left", "left")
    assert is_correct(K.DIRECTION, "Left", "`left`")
    assert not is_correct(K.DIRECTION, "right", "left")
    assert is_correct(K.YES_NO, True, "yes")
    assert not is_correct(K.YES_NO, "no", "yes")
    assert is_correct(K.CHOICE, "b", "B")
    assert not is_correct(K.CHOICE, None, "B")


def test_scalar_relative_error_boundary() -> None:
    # |1200 - 1000| = 200 = 0.2 * 1000: inside; 1201 is not
    assert numeric_correct(K.DISTANCE, 1200, 1000)
    assert numeric_correct(K.DISTANCE, 800, 1000)
    assert not numeric_correct(K.DISTANCE, 1201, 1000)
    assert not numeric_correct(K.DISTANCE, 799, 1000)
    assert is_correct(K.ANGLE, 36, 30)  # 6 <= 0.2 * 30
    assert not is_correct(K.ANGLE, 37, 30)


def test_vector_l2_relative_error() -> None:
    gt = [300, -400, 0]  # |gt| = 500, tolerance 100
    assert is_correct(K.VECTOR, [360, -480, 0], gt)  # error |(60, -80, 0)| = 100
    assert not is_correct(K.VECTOR, [361, -480, 0], gt)  # error sqrt(61^2 + 80^2) = 100.6
    assert not is_correct(K.VECTOR, [300, -400], gt)  # wrong dimension
    # a per-axis check would pass this one; the L2 rule does not: error |(90, 90, 0)| = 127 > 100
    assert not is_correct(K.VECTOR, [390, -310, 0], gt)


def test_zero_ground_truth_uses_the_absolute_tolerance() -> None:
    assert is_correct(K.DISTANCE, 0, 0)
    assert is_correct(K.DISTANCE, 10, 0)  # within the 10 mm "did not move" threshold
    assert not is_correct(K.DISTANCE, 11, 0)
    assert is_correct(K.VECTOR, [6, -8, 0], [0, 0, 0])  # |error| = 10 mm
    assert not is_correct(K.VECTOR, [6, -8, 1], [0, 0, 0])
    assert is_correct(K.ANGLE, 1, 0) and not is_correct(K.ANGLE, 2, 0)


def test_pixels_within_five_percent_of_width() -> None:
    # 640x480 frame: tolerance 32 px; x differs by 50/1000*640 = 32 px -> correct
    assert pixel_correct([550, 500], [500, 500], 640, 480)
    assert not pixel_correct([551, 500], [500, 500], 640, 480)
    # y scale is the height: 66/1000*480 = 31.7 px -> correct, 67 -> 32.2 px wrong
    assert pixel_correct([500, 566], [500, 500], 640, 480)
    assert not pixel_correct([500, 567], [500, 500], 640, 480)
    # diagonal: (30, 30) px -> 42.4 > 32
    assert not is_correct(K.COORDINATE, [500 + 30 / 0.64, 500 + 30 / 0.48], [500, 500], 640, 480)
    assert is_correct(K.COORDINATE, [520, 530], [500, 500])  # unknown size: square, 50 units


def test_table2_rows_and_average() -> None:
    assert table2_row("camera_translation_x", K.DIRECTION) == "Camera translation direction"
    assert table2_row("camera_yaw_direction", K.DIRECTION) == "Camera orientation direction"
    assert table2_row("camera_pitch_angle", K.ANGLE) == "Camera orientation degree"
    assert table2_row("camera_vector", K.VECTOR) == "Camera translation vector"
    assert table2_row("depth_compare_dot", K.CHOICE) == "Depth comparison"
    assert table2_row("depth_value_coord", K.DEPTH) == "Depth value"
    assert table2_row("correspondence_choice", K.CHOICE) == "Correspondence multiple choice"
    assert table2_row("object_movement_adt_vector_dot", K.VECTOR) == "Object movement vector"
    assert table2_row("object_size_height", K.DISTANCE) == "Object size"
    assert table2_row("robot_object_distance", K.DISTANCE) is None
    assert len(TABLE2_ROWS) == 12
    scores = score_all(
        [
            ("camera_translation_x", K.DIRECTION, "left", "left", None),
            ("camera_translation_y", K.DIRECTION, "up", "down", None),
            ("camera_translation_z", K.DIRECTION, "forward", "forward", None),  # row: 2 of 3 = 66.7
            ("depth_compare_dot", K.CHOICE, "A", "B", None),  # row: 0
            ("robot_gripper_direction", K.DIRECTION, "up", "up", None),  # no row
        ]
    )
    table = scores.table2()
    assert table["Camera translation direction"] == pytest.approx(200 / 3)
    assert table["Depth comparison"] == 0.0
    assert scores.table2_average() == pytest.approx(100 / 3)  # unweighted mean of the two rows present
    assert scores.overall == pytest.approx(60.0)
    md = scores.to_markdown("t")
    assert "| Average | 33.33 |" in md and "2 of 12" in md
    assert Scores().table2_average() is None


def test_wilson_interval_against_hand_computed_cases() -> None:
    """89/100: centre (0.89 + 1.96^2/200) / (1 + 1.96^2/100) = 0.8756, half-width 0.0619."""
    lo, hi = wilson_interval(89, 100)
    assert (lo, hi) == (pytest.approx(81.37, abs=0.01), pytest.approx(93.75, abs=0.01))
    # 0 of 10 gives [0, 2 * 0.19208 / 1.38416] = [0, 27.75], and 10 of 10 its mirror image
    assert wilson_interval(0, 10) == (pytest.approx(0.0, abs=1e-9), pytest.approx(27.75, abs=0.01))
    assert wilson_interval(10, 10) == (pytest.approx(72.25, abs=0.01), pytest.approx(100.0))
    assert wilson_interval(0, 0) == (0.0, 100.0)
    answers = [("robot_gripper_yes_no", K.YES_NO, "yes", "yes", None)] * 89
    scores = score_all(answers + [("robot_gripper_yes_no", K.YES_NO, "no", "yes", None)] * 11)
    got = scores.to_json()["subtasks"]["robot_gripper_yes_no"]["interval95"]
    assert got == pytest.approx([81.37, 93.75], abs=0.01)
    assert "| 89.00 | 81.4-93.7 | 100 |" in scores.to_markdown()
    # the overall interval pools every answer: 99 of 110 with ten right camera answers added
    scores = score_all(
        answers
        + [("robot_gripper_yes_no", K.YES_NO, "no", "yes", None)] * 11
        + [("camera_translation_x", K.DIRECTION, "left", "left", None)] * 10
    )
    assert scores.to_json()["overall_interval95"] == pytest.approx([82.98, 94.33], abs=0.01)
    assert "| **all** | | 90.00 | 83.0-94.3 | 110 |" in scores.to_markdown()


def test_best_numeric_answer_weighs_the_tolerance_window_by_hand() -> None:
    # the likeliest single value is 200 (0.4), but any guess in [88, 120] is right for both 100 and 110
    # (0.6): the guess and its chance of being scored right
    assert best_numeric_answer(K.DISTANCE, {100: 0.3, 110: 0.3, 200: 0.4}) == (100, pytest.approx(0.6))
    # unnormalised (pruned) distributions are read relative to what they hold
    assert best_numeric_answer(K.DISTANCE, {100: 0.15, 110: 0.15, 200: 0.2}) == (100, pytest.approx(0.6))
    # values under the 10-mm "did not move" threshold all mean 0: 0 and 5 together (0.55) beat 150
    assert best_numeric_answer(K.DISTANCE, {0: 0.45, 5: 0.1, 150: 0.45}) == (0, pytest.approx(0.55))
    # the metric would also take 10 mm for a zero truth (within 10 mm), and for 9-12 mm: a likely zero
    # stays 0 and is not traded for a borderline move
    assert best_numeric_answer(K.DISTANCE, {0: 0.5, 11: 0.2, 40: 0.3}) == (0, pytest.approx(0.5))
    assert best_numeric_answer(K.DISTANCE, {0: 0.3, 11: 0.2, 40: 0.5}) == (40, pytest.approx(0.5))
    # a guess that is none of the values: 100 and 145 are 45 % apart, and 120 (1.2 x 100) reaches both
    value, p = best_numeric_answer(K.DISTANCE, {100: 0.35, 145: 0.35, 400: 0.3})
    assert value not in (100, 145, 400) and numeric_correct(K.DISTANCE, value, 100)
    assert numeric_correct(K.DISTANCE, value, 145) and p == pytest.approx(0.7)
    with pytest.raises(ValueError, match="empty"):
        best_numeric_answer(K.DISTANCE, {})


def test_numeric_sub_tasks_are_split_by_zero_ground_truth() -> None:
    # an "always 0" answerer: right on every still object, wrong on every moved one
    scores = score_all(
        [
            ("robot_object_distance", K.DISTANCE, 0, 0, None),
            ("robot_object_distance", K.DISTANCE, 0, 0, None),
            ("robot_object_distance", K.DISTANCE, 0, 0, None),
            ("robot_object_distance", K.DISTANCE, 0, 120, None),
            ("camera_vector", K.VECTOR, [0, 0, 0], [0, 0, 0], None),
            ("camera_vector", K.VECTOR, [100, 0, 0], [90, 10, 0], None),
            ("robot_gripper_direction", K.DIRECTION, "up", "up", None),
        ]
    )
    obj, vec = scores.subtasks["robot_object_distance"], scores.subtasks["camera_vector"]
    assert (obj.accuracy, obj.zero_correct, obj.zero_total) == (75.0, 3, 3)
    assert (vec.zero_correct, vec.zero_total, vec.correct) == (1, 1, 2)
    assert scores.subtasks["robot_gripper_direction"].zero_total == 0
    report = scores.to_json()["subtasks"]
    assert report["robot_object_distance"]["zero_truth"] == [3, 3]
    assert "zero_truth" not in report["robot_gripper_direction"]
    md = scores.to_markdown("t")
    assert "| robot_object_distance | 3 / 3 | 0 / 1 |" in md and "| camera_vector | 1 / 1 | 1 / 1 |" in md
    assert "robot_gripper_direction | 0" not in md.split("by ground truth")[1]
    assert "by ground truth" not in score_all([("x", K.DIRECTION, "up", "up", None)]).to_markdown()


def test_best_numeric_answer_matches_scoring_every_guess_against_every_value() -> None:
    """The sorted-window search gives what weighing each guess against each value with the metric gives."""
    import math
    import random

    rng = random.Random(0)
    for _ in range(200):
        values = rng.sample(range(0, 900), rng.randint(1, 40))
        dist = {v: rng.random() ** 3 for v in values}
        still = sum(p for t, p in dist.items() if t < 10)
        moved = {t: p for t, p in dist.items() if t >= 10}
        guesses = {g for t in moved for g in (t, math.ceil(0.8 * t), math.floor(1.2 * t)) if g >= 10}
        mass = {v: sum(p for t, p in moved.items() if numeric_correct(K.DISTANCE, v, t)) for v in guesses}
        best = max(sorted(guesses), key=lambda v: (mass[v], dist.get(v, 0.0)), default=0)
        want = (0, still) if not guesses or still >= mass[best] else (best, mass[best])
        got = best_numeric_answer(K.DISTANCE, dist)
        assert got[0] == want[0] and got[1] == pytest.approx(want[1] / sum(dist.values()))
