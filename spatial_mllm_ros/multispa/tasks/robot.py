"""Robot extensions about named things ("the gripper", "the red cube"): simulation truth or a bag's /tf.

Their motion direction in the first frame's camera axes, balanced yes/no questions, and distances
with "did not move".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.conventions import (
    DIRECTION_VECTORS,
    DIRECTIONS,
    OPPOSITE_DIRECTION,
    STATIC_THRESHOLD_M,
    QuestionKind,
    direction_of,
    format_value,
)
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.geometry import invert_pose, quota_sample
from spatial_mllm_ros.multispa.sources.base import GRIPPER
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec
from spatial_mllm_ros.multispa.templates import render, static_answer, upper_first

DOMINANCE = 1.5  # a direction question needs its axis this much larger than the next one
DISTANCE_BINS = 10
CANDIDATES_PER_SAMPLE = 12


@dataclass(frozen=True)
class EntityMotion:
    """A named thing's motion between frames t1 and t2, in camera-1 optical axes (metres)."""

    name: str
    t1: int
    t2: int
    vector_cam_m: np.ndarray

    @property
    def distance_m(self) -> float:
        """Length of the displacement."""
        return float(np.linalg.norm(self.vector_cam_m))

    @property
    def moved(self) -> bool:
        """At least the static threshold (1 cm)."""
        return self.distance_m >= STATIC_THRESHOLD_M

    @property
    def direction(self) -> str | None:
        """Dominant direction word (the simulator's rule), None when it did not move."""
        return direction_of(self.vector_cam_m) if self.moved else None

    @property
    def clear(self) -> bool:
        """Whether the dominant axis beats the next one by DOMINANCE (direction questions need it)."""
        mags = np.sort(np.abs(self.vector_cam_m))
        return self.moved and mags[2] >= DOMINANCE * mags[1]

    def meta(self) -> dict[str, object]:
        """Return the quantities the labels come from."""
        return {"entity": self.name, "t1": self.t1, "t2": self.t2, "vector_cam_m": self.vector_cam_m.tolist(),
                "distance_m": self.distance_m, "moved": self.moved, "direction": self.direction}


def subject_text(name: str) -> str:
    """How a question names a thing: "the gripper", "the red cube"."""
    return f"the {name}"


def _motions(ctx: TaskContext, names: list[str], n: int) -> list[EntityMotion]:
    """Draw (thing, t1 < t2) n times; a draw without the thing's position at t1 or t2 (NaN) is left out."""
    video = ctx.scene.video
    assert video is not None
    n_frames = len(video.views)
    out = []
    for _ in range(n if n_frames >= 2 else 0):
        t1, t2 = sorted(ctx.rng.choice(n_frames, size=2, replace=False).tolist())
        name = names[int(ctx.rng.integers(len(names)))]
        dp = video.entities[name][t2] - video.entities[name][t1]
        if np.isfinite(dp).all():
            out.append(EntityMotion(name, t1, t2, invert_pose(video.views[t1].c2w)[:3, :3] @ dp))
    return out


def _names(ctx: TaskContext, spec: TaskSpec) -> list[str]:
    video = ctx.scene.video
    assert video is not None
    names = sorted(video.entities)
    return [m for m in names if (m == GRIPPER) == (spec.params["subject"] == GRIPPER)]


def _pool(ctx: TaskContext, spec: TaskSpec, n: int) -> list[EntityMotion]:
    """Random motions of the spec's subject, CANDIDATES_PER_SAMPLE per wanted sample (none without one)."""
    names = _names(ctx, spec)
    return _motions(ctx, names, n * CANDIDATES_PER_SAMPLE) if names else []


def _sample(ctx: TaskContext, spec: TaskSpec, motion: EntityMotion, text_group: str, value: str,
            extra: dict[str, object], answer: str | None = None, **fields: str) -> Sample:
    video = ctx.scene.video
    assert video is not None
    v1, v2 = video.views[motion.t1], video.views[motion.t2]
    subject = subject_text(motion.name)
    text = render(text_group, ctx.rng, value, answer=answer, subject=subject, **fields)
    sid = ctx.next_id(spec.name)
    meta = {**motion.meta(), "subject": subject, "script": ctx.scene.info.get("script", {}), **extra}
    return ctx.sample(spec, sid, [ctx.images.frame(v1), ctx.images.frame(v2)], [v1, v2], text, meta)


def robot_direction(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """Dominant direction of a named thing's motion in camera-1 axes (moved, unambiguous cases only)."""
    pool = [m for m in _pool(ctx, spec, n) if m.clear]
    by_dir: dict[str, list[EntityMotion]] = {}
    for m in pool:
        by_dir.setdefault(str(m.direction), []).append(m)
    out: list[Sample] = []
    keys = sorted(by_dir)
    for i in range(min(n, len(pool))):  # round-robin over directions keeps labels balanced
        bucket = by_dir[keys[i % len(keys)]]
        if not bucket:
            continue
        m = bucket.pop()
        out.append(_sample(ctx, spec, m, "robot_direction", format_value(QuestionKind.DIRECTION, m.direction),
                           {"label": m.direction}))
    return out


def robot_yes_no(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """"Did the gripper move left?" with yes and no drawn equally; static things always answer no."""
    pool = _pool(ctx, spec, n)
    yes: list[EntityMotion] = []
    no: list[EntityMotion] = []
    for i in ctx.rng.permutation(len(pool)):
        m = pool[int(i)]
        if m.clear and len(yes) <= len(no):
            yes.append(m)
        elif m.clear or not m.moved:  # a vague diagonal motion makes no clear yes/no question
            no.append(m)
    k = min(len(yes), len(no), n // 2)  # exactly as many yes as no
    drawn = [(m, True) for m in yes[:k]] + [(m, False) for m in no[:k]]
    out: list[Sample] = []
    for j in ctx.rng.permutation(len(drawn)):
        m, want_yes = drawn[int(j)]
        if want_yes:
            asked = str(m.direction)
        elif m.moved:
            unit = m.vector_cam_m / m.distance_m
            wrong = [d for d in DIRECTIONS if float(unit @ np.array(DIRECTION_VECTORS[d])) < 0.3]
            asked = OPPOSITE_DIRECTION[str(m.direction)] if ctx.rng.random() < 0.5 else \
                wrong[int(ctx.rng.integers(len(wrong)))]
        else:
            asked = DIRECTIONS[int(ctx.rng.integers(len(DIRECTIONS)))]
        label = "yes" if want_yes else "no"
        out.append(_sample(ctx, spec, m, "robot_yes_no", format_value(QuestionKind.YES_NO, label),
                           {"asked": asked, "label": label}, direction=asked))
    return out


def robot_distance(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """How far a named thing moved (mm), distance-balanced; under 1 cm it "did not move"."""
    pool = _pool(ctx, spec, n)
    if not pool:
        return []
    dist = np.array([m.distance_m for m in pool])
    edges = np.linspace(0.0, max(float(dist.max()), 1e-6), DISTANCE_BINS + 1)
    out: list[Sample] = []
    for i in quota_sample(dist, edges, n, ctx.rng):
        m = pool[int(i)]
        value = int(round(1000.0 * m.distance_m)) if m.moved else 0
        static = f"{upper_first(subject_text(m.name))} did not move."
        answer = None if m.moved else static_answer(ctx.rng, static)
        out.append(_sample(ctx, spec, m, "robot_distance", format_value(QuestionKind.DISTANCE, value),
                           {"label": value, "static": not m.moved}, answer=answer))
    return out


def _spec(name: str, kind: QuestionKind, fn: object, subject: str, description: str) -> TaskSpec:
    return TaskSpec(name, "robot", kind, 2, "entities", fn, {"subject": subject},  # type: ignore[arg-type]
                    description=description, sources=("sim", "rosbag"))


SPECS: tuple[TaskSpec, ...] = (
    _spec("robot_gripper_direction", QuestionKind.DIRECTION, robot_direction, GRIPPER,
          "direction the gripper moved, camera-1 axes"),
    _spec("robot_object_direction", QuestionKind.DIRECTION, robot_direction, "object",
          "direction a named object moved, camera-1 axes"),
    _spec("robot_gripper_yes_no", QuestionKind.YES_NO, robot_yes_no, GRIPPER,
          "\"Did the gripper move <direction>?\", yes/no balanced"),
    _spec("robot_object_yes_no", QuestionKind.YES_NO, robot_yes_no, "object",
          "\"Did the red cube move <direction>?\", yes/no balanced"),
    _spec("robot_gripper_distance", QuestionKind.DISTANCE, robot_distance, GRIPPER,
          "distance the gripper moved in mm"),
    _spec("robot_object_distance", QuestionKind.DISTANCE, robot_distance, "object",
          "distance a named object moved in mm, \"did not move\" under 1 cm"),
)
