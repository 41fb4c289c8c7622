"""Robot questions from simulated-episode truth, worded with the data engine's templates.

Sub-tasks (names as the data engine's robot family, plus two of ours): gripper/object movement direction,
yes/no "did X move <direction>", movement distance in mm (0 = "did not move"), "did X move at all",
camera translation direction (camera_translation_x/y/z) and depth comparison ("is X closer to the camera
than Y?" on one frame). Answers are the bare backticked value (format.format_value), the form the
runtime's closed-set scoring continues after its forced backtick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.conventions import (
    DIRECTIONS,
    OPPOSITE_DIRECTION,
    STATIC_THRESHOLD_M,
    QuestionKind,
    direction_of,
    format_value,
)
from spatial_mllm_ros.multispa.templates import render

DOMINANCE = 1.5  # direction questions need the main axis this much larger than the next (as the engine)
_MOVED_AT_ALL = (
    "Did {subject} move at all between Image-1 and Image-2?",
    "Has {subject} changed position between the frames?",
    "Is {subject} in a different place in Image-2 than in Image-1?",
    "Between the two frames, did {subject} move?",
)
_CLOSER = (
    "Is {a} closer to the camera than {b}?",
    "Is {a} nearer to the camera than {b}?",
    "Compared with {b}, is {a} closer to the camera?",
    "Does {a} lie closer to the camera than {b}?",
)
_DEPTH_DESCRIPTIONS = (
    "The image is a frame from a robot's camera.",
    "A tabletop scene with a gripper is shown.",
    "Look at the robot's view.",
)
CAMERA_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Question:
    """One generated question over frames (t1, t2) of an episode (t2 = -1: single frame t1)."""

    task: str
    kind: QuestionKind
    description: str
    question: str
    answer: str
    t1: int
    t2: int
    meta: dict


def camera_xyz(truth: dict, t: int, point: list[float]) -> np.ndarray:
    """Express a world point in frame t's camera optical axes (metres)."""
    c2w = np.asarray(truth["T_world_cam"][t])
    return c2w[:3, :3].T @ (np.asarray(point) - c2w[:3, 3])


def _track(truth: dict, entity: str) -> list:
    return truth["gripper"] if entity == "gripper" else truth["objects"][entity]


def _motion_cam(truth: dict, entity: str, t1: int, t2: int) -> np.ndarray:
    pos = _track(truth, entity)
    c2w = np.asarray(truth["T_world_cam"][t1])
    return c2w[:3, :3].T @ (np.asarray(pos[t2]) - np.asarray(pos[t1]))


def _clear(v: np.ndarray) -> bool:
    m = np.sort(np.abs(v))
    return bool(np.linalg.norm(v) >= STATIC_THRESHOLD_M and m[2] >= DOMINANCE * m[1])


def _entity_questions(truth: dict, entity: str, t1: int, t2: int, rng: np.random.Generator) -> list[Question]:
    v = _motion_cam(truth, entity, t1, t2)
    dist = float(np.linalg.norm(v))
    moved = dist >= STATIC_THRESHOLD_M
    who = "gripper" if entity == "gripper" else "object"
    subject = f"the {entity}"
    meta = {"entity": entity, "vector_cam_m": v.round(4).tolist(), "moved": moved}
    out: list[Question] = []

    def add(
        task: str,
        kind: QuestionKind,
        group_or_texts: str | tuple[str, ...],
        value: str,
        extra: dict | None = None,
        **fields: str,
    ) -> None:
        if isinstance(group_or_texts, str):
            r = render(group_or_texts, rng, value, subject=subject, **fields)
            desc, q = r.description, r.question
        else:
            desc = render("robot_direction", rng, value, subject=subject).description
            q = str(rng.choice(group_or_texts)).format(subject=subject, **fields)
        out.append(Question(task, kind, desc, q, value, t1, t2, {**meta, **(extra or {})}))

    if _clear(v):
        direction = direction_of(v)
        add(
            f"robot_{who}_direction",
            QuestionKind.DIRECTION,
            "robot_direction",
            format_value(QuestionKind.DIRECTION, direction),
        )
        # a minimal pair: the same frames asked the true direction ("yes") and another ("no", half of the
        # time the opposite), so the asked word is the only thing that tells the two answers apart
        others = [d for d in DIRECTIONS if d not in (direction, OPPOSITE_DIRECTION[direction])]
        contrast = OPPOSITE_DIRECTION[direction] if rng.random() < 0.5 else str(rng.choice(others))
        for asked in (direction, contrast):
            add(
                f"robot_{who}_yes_no",
                QuestionKind.YES_NO,
                "robot_yes_no",
                format_value(QuestionKind.YES_NO, asked == direction),
                {"asked": asked},
                direction=asked,
            )
    elif not moved:
        asked = str(rng.choice(DIRECTIONS))
        add(
            f"robot_{who}_yes_no",
            QuestionKind.YES_NO,
            "robot_yes_no",
            format_value(QuestionKind.YES_NO, False),
            {"asked": asked},
            direction=asked,
        )
    if moved or rng.random() < 0.5:
        add(
            f"robot_{who}_distance",
            QuestionKind.DISTANCE,
            "robot_distance",
            format_value(QuestionKind.DISTANCE, round(1000 * dist) if moved else 0),
        )
        add(
            f"robot_{who}_moved", QuestionKind.YES_NO, _MOVED_AT_ALL, format_value(QuestionKind.YES_NO, moved)
        )
    return out


def _camera_questions(truth: dict, t1: int, t2: int, rng: np.random.Generator) -> list[Question]:
    c1, c2 = np.asarray(truth["T_world_cam"][t1]), np.asarray(truth["T_world_cam"][t2])
    d = c1[:3, :3].T @ (c2[:3, 3] - c1[:3, 3])
    if not _clear(d):
        return []
    axis = int(np.argmax(np.abs(d)))
    name = CAMERA_AXES[axis]
    value = format_value(QuestionKind.DIRECTION, direction_of(d))
    r = render(f"camera_dir_{name}", rng, value)
    return [
        Question(
            f"camera_translation_{name}",
            QuestionKind.DIRECTION,
            r.description,
            r.question,
            value,
            t1,
            t2,
            {"vector_cam_m": d.round(4).tolist()},
        )
    ]


def _depth_questions(truth: dict, t: int, rng: np.random.Generator) -> list[Question]:
    names = ["gripper", *truth["objects"]]
    if len(names) < 2:
        return []
    a, b = (str(x) for x in rng.choice(names, size=2, replace=False))
    depth = {x: float(camera_xyz(truth, t, _track(truth, x)[t])[2]) for x in (a, b)}
    za, zb = depth[a], depth[b]
    if abs(za - zb) < 0.02 or min(za, zb) <= 0:  # too close to call from pixels
        return []
    # a minimal pair: the same frame and wording with the two names swapped, so only their order tells
    # the answers apart (one order alone let the model answer from the pair, whichever came first)
    template, description = str(rng.choice(_CLOSER)), str(rng.choice(_DEPTH_DESCRIPTIONS))
    return [
        Question(
            "robot_depth_compare",
            QuestionKind.YES_NO,
            description,
            template.format(a=f"the {x}", b=f"the {y}"),
            format_value(QuestionKind.YES_NO, bool(depth[x] < depth[y])),
            t,
            -1,
            {"a": x, "b": y, "depth_a_m": round(depth[x], 4), "depth_b_m": round(depth[y], 4)},
        )
        for x, y in ((a, b), (b, a))
    ]


def pair_questions(truth: dict, t1: int, t2: int, rng: np.random.Generator) -> list[Question]:
    """Every question the pair (t1, t2) of an episode answers (camera, gripper, each object)."""
    out = _camera_questions(truth, t1, t2, rng)
    if truth["motion"] != "camera_translate":
        for entity in ("gripper", *truth["objects"]):
            out += _entity_questions(truth, entity, t1, t2, rng)
    return out


def frame_questions(truth: dict, t: int, rng: np.random.Generator) -> list[Question]:
    """Single-frame questions of frame t."""
    return _depth_questions(truth, t, rng)
