"""Answer parsing over real-world phrasings: the paper's answer styles, GPT-style sentences, edge cases."""

from __future__ import annotations

import json

import pytest

from spatial_mllm_ros.answers import Answer, Question, classify_question, closed_options, parse_answer
from spatial_mllm_ros.conventions import (
    DID_NOT_MOVE,
    QuestionKind,
    build_prompt,
    format_value,
    to_norm_coords,
)
from spatial_mllm_ros.multispa.format import make_sample, sample_from_json, sample_to_json

K = QuestionKind

# (raw answer, kind given to the parser or None, expected value, expected unit)
CASES: list[tuple[str, QuestionKind | None, object, str | None]] = [
    # --- the paper's answer styles (backticked values)
    ("The camera shifted `left`.", K.DIRECTION, "left", None),
    ("The camera shifted `left`.", None, "left", None),
    ("The camera moved `forward` between the two frames.", K.DIRECTION, "forward", None),
    ("Turning `right` is how the camera rotated.", K.DIRECTION, "right", None),
    ("The camera tilted `up`.", None, "up", None),
    ("`backward`", K.DIRECTION, "backward", None),
    ("The camera moved `2249` mm.", K.DISTANCE, 2249, "mm"),
    ("`2249` mm", None, 2249, "mm"),
    ("The distance is `2249`.", K.DISTANCE, 2249, "mm"),
    ("The depth of the point is `1834` mm.", K.DEPTH, 1834, "mm"),
    ("The camera rotated `35` degrees to the left.", K.ANGLE, 35.0, "degrees"),
    ("`35` degrees", None, 35.0, "degrees"),
    ("The corresponding point in Image-2 is at `[ 512 , 300 ]`.", K.COORDINATE, [512, 300], "norm1000"),
    ("`[ 512 , 300 ]`", None, [512, 300], "norm1000"),
    ("The displacement vector is `[ 10 , -20 , 30 ]` mm.", K.VECTOR, [10, -20, 30], "mm"),
    ("`[ 10 , -20 , 30 ]`", None, [10, -20, 30], "mm"),
    ("The height of the chair is `873` mm.", K.DISTANCE, 873, "mm"),
    ("The correct point is `C`.", K.CHOICE, "C", None),
    ("`B`", None, "B", None),
    ("`yes`", None, "yes", None),
    ("The answer is `no`.", K.YES_NO, "no", None),
    ("Point `A` is closer to the camera.", K.CHOICE, "A", None),
    ("The point did not move.", K.DISTANCE, 0, "mm"),
    (DID_NOT_MOVE, K.VECTOR, [0, 0, 0], "mm"),
    ("The point did not move. `0` mm", K.DISTANCE, 0, "mm"),
    # --- GPT-style sentences, no backticks
    ("The camera appears to have moved to the left.", K.DIRECTION, "left", None),
    ("It looks like the camera shifted leftward slightly.", K.DIRECTION, "left", None),
    ("The camera panned rightwards between Image-1 and Image-2.", K.DIRECTION, "right", None),
    ("Based on the parallax, the camera moved forward toward the table.", K.DIRECTION, "forward", None),
    ("The camera moved backwards, away from the desk.", K.DIRECTION, "backward", None),
    ("The viewpoint was lowered: the camera moved downward.", K.DIRECTION, "down", None),
    ("The camera did not move left; it moved right.", K.DIRECTION, "right", None),
    ("Right.", K.DIRECTION, "right", None),
    ("LEFT", K.DIRECTION, "left", None),
    ("The object moved towards the camera.", K.DIRECTION, "backward", None),
    ("The cube was pushed away from the camera.", K.DIRECTION, "forward", None),
    ("The gripper went up to the shelf, so it moved up.", K.DIRECTION, "up", None),
    ("Yes, the cube moved.", K.YES_NO, "yes", None),
    ("No. The gripper is still open.", K.YES_NO, "no", None),
    ("That is correct, the object was lifted.", K.YES_NO, "yes", None),
    ("I believe the answer is yes.", None, "yes", None),
    ("The camera moved approximately 1.2 meters.", K.DISTANCE, 1200, "mm"),
    ("Roughly 45 cm.", K.DISTANCE, 450, "mm"),
    ("About 2.5 m to the right.", K.DISTANCE, 2500, "mm"),
    ("The object is about 7 inches tall.", K.DISTANCE, 178, "mm"),
    ('It is 12" wide.', K.DISTANCE, 305, "mm"),
    ("The table is about 3 feet long.", K.DISTANCE, 914, "mm"),
    ("Between Image-1 and Image-2 the camera moved 1,250 millimeters.", K.DISTANCE, 1250, "mm"),
    ("The point is 0.85 metres from the camera.", K.DEPTH, 850, "mm"),
    ("1.2 m (1200 mm)", None, 1200, "mm"),
    ("The camera rotated by roughly 30°.", K.ANGLE, 30.0, "degrees"),
    ("It turned about 0.5 radians.", K.ANGLE, 28.65, "degrees"),
    ("The yaw changed by −12 degrees.", K.ANGLE, -12.0, "degrees"),
    ("The point in the second image is at (640, 220).", K.COORDINATE, [640, 220], "norm1000"),
    ("x = 410, y = 95", K.COORDINATE, [410, 95], "norm1000"),
    ("`512, 300`", K.COORDINATE, [512, 300], "norm1000"),
    ("The displacement is [0.10, -0.02, 0.30] m.", K.VECTOR, [100, -20, 300], "mm"),
    ("x: 15 mm, y: -5 mm, z: 40 mm", K.VECTOR, [15, -5, 40], "mm"),
    ("The object moved by (12, 0, -7).", K.VECTOR, [12, 0, -7], "mm"),
    ("The answer is (B).", K.CHOICE, "B", None),
    ("Option D is the matching point.", K.CHOICE, "D", None),
    ("C. The third dot matches.", K.CHOICE, "C", None),
    ("There are three cubes on the table.", K.COUNT, 3, None),
    ("I count `4` objects.", K.COUNT, 4, None),
    ("5", K.COUNT, 5, None),
    ("The mug is on the left of the laptop.", K.FREE, "The mug is on the left of the laptop.", None),
    ("The robot is `stacking cubes`.", K.FREE, "stacking cubes", None),
    # --- unparseable: value None, raw kept
    ("I cannot determine this from the images.", K.DIRECTION, None, None),
    ("I'm not sure how far it moved.", K.DISTANCE, None, None),
    ("", K.YES_NO, None, None),
    ("The point is somewhere in the middle.", K.COORDINATE, None, None),
    ("It moved a bit.", K.VECTOR, None, None),
    ("None of them.", K.CHOICE, None, None),
]


@pytest.mark.parametrize(("raw", "kind", "value", "unit"), CASES)
def test_parse_answer(raw: str, kind: QuestionKind | None, value: object, unit: str | None) -> None:
    ans = parse_answer(raw, kind)
    assert ans.raw == raw
    if isinstance(value, float):
        assert ans.value == pytest.approx(value, abs=0.01)
    else:
        assert ans.value == value, (raw, ans)
    assert ans.unit == unit
    assert (ans.error is None) == (value is not None)


def test_enough_phrasings() -> None:
    assert len(CASES) >= 60


def test_coordinates_to_pixels() -> None:
    ans = parse_answer("`[ 500 , 250 ]`", K.COORDINATE, frame_size=(640, 480))
    assert ans.value == [320.0, 120.0] and ans.unit == "px"
    assert to_norm_coords(320, 120, 640, 480) == (500, 250)


@pytest.mark.parametrize("raw", [None, 12, b"left", ["left"]])
def test_never_raises_on_non_text(raw: object) -> None:
    ans = parse_answer(raw, K.DIRECTION)  # type: ignore[arg-type]
    assert ans.value is None and ans.error


def test_huge_answer_bounded() -> None:
    raw = "blah " * 2_000_000 + "`left`"
    ans = parse_answer(raw, K.DIRECTION)
    assert ans.value is None and ans.raw is raw


def test_static_flag_and_json() -> None:
    ans = parse_answer("The point did not move.", K.DISTANCE)
    assert ans.static and ans.value == 0
    d = json.loads(ans.to_json())
    assert d["kind"] == "distance" and d["static"] is True
    assert isinstance(Answer(K.FREE, "x").to_dict(), dict)


@pytest.mark.parametrize(
    ("question", "kind", "options"),
    [
        ("Did the camera move left or right?", K.DIRECTION, ("left", "right")),
        ("Did the camera tilt up or down between the images?", K.DIRECTION, ("up", "down")),
        ("In which direction did the camera move?", K.DIRECTION, None),
        ("Did the cube move?", K.YES_NO, ("yes", "no")),
        ("Is the gripper holding the cube?", K.YES_NO, ("yes", "no")),
        ("How far did the camera move?", K.DISTANCE, None),
        ("How many degrees did the camera rotate?", K.ANGLE, None),
        ("What is the depth of the red point?", K.DEPTH, None),
        ("What are the coordinates of this point in Image-2?", K.COORDINATE, None),
        ("What is the displacement vector of the point?", K.VECTOR, None),
        ("Which of the points A, B, C, D matches the dot in Image-1?", K.CHOICE, ("A", "B", "C", "D")),
        ("Which is closer to the camera, point A or point B?", K.CHOICE, ("A", "B")),
        ("How many cubes are there?", K.COUNT, None),
        ("What is the robot doing?", K.FREE, None),
    ],
)
def test_classify_and_options(question: str, kind: QuestionKind, options: tuple[str, ...] | None) -> None:
    assert classify_question(question) == kind
    got = closed_options(kind, question)
    if kind is K.DIRECTION and options is None:
        assert got == ("left", "right", "up", "down", "forward", "backward")
    else:
        assert got == options
    q = Question(question)
    assert q.resolved_kind() == kind


def test_question_overrides() -> None:
    q = Question("Which way?", kind=K.DIRECTION, options=("forward", "backward"))
    assert q.resolved_options() == ("forward", "backward")


def test_format_roundtrip() -> None:
    for kind, value in [(K.DIRECTION, "left"), (K.DISTANCE, 2249), (K.COORDINATE, (512, 300)),
                        (K.VECTOR, (10, -20, 30)), (K.YES_NO, True), (K.CHOICE, "b"), (K.ANGLE, 35)]:
        text = f"The answer is {format_value(kind, value)}."
        ans = parse_answer(text, kind)
        expect = {K.YES_NO: "yes", K.CHOICE: "B"}.get(kind, value)
        if isinstance(expect, tuple):
            expect = list(expect)
        assert ans.value == expect, (kind, text, ans)
    assert build_prompt(1, "desc", "q?") == "<image>\ndesc\nq?"
    assert build_prompt(2, "desc", "q?") == "Image-1: <image>\nImage-2: <image>\ndesc\nq?"
    s = make_sample("1", ["a.png", "b.png"], "Left or right?", "`left`", kind=K.DIRECTION, task="cam_x",
                    sizes=[(640, 480), (640, 480)], meta={"scene": "s0"})
    assert sample_from_json(sample_to_json(s)) == s
    assert json.loads(sample_to_json(s))["width_list"] == [640, 640]
