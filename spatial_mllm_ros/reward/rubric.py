"""Reward rubrics: what the robot was supposed to do, as questions with reward rules (YAML).

Rewards, per label:
- direction: the parsed answer equals `expect` -> +1, another answer -> -1, unparseable -> 0.
- metric: r = max(0, 1 - |value - target_mm| / target_mm) in [0, 1]; unparseable -> 0.
- static ("did not move"): answer says no motion (static text, `no`, or < STATIC_THRESHOLD_M) -> +1,
  motion -> -1, unparseable -> 0.
- progress (GVL): frame 0 is fixed at 0 %, every other frame is rated against it (in shuffled order,
  so no ordering cue reaches the model); progress = answer / scale, clipped to 0..1. Each frame's
  label reward is its progress gain over the previous frame in time order; the episode's VOC is the
  Spearman correlation of progress with time (-1..1, constant predictions 0).
Questions, `expect` and `truth` may hold {placeholders} filled from each episode's marker labels.
Aggregation: a step's reward is the weight-averaged reward of the step-span checks asked on that
consecutive frame pair. The episode reward aggregates each check over its labels (`episode_aggregate`:
mean, min or last), then weight-averages the checks (progress counts with its weight, as its VOC).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from spatial_mllm_ros.answers import Answer, Question
from spatial_mllm_ros.conventions import DIRECTIONS, STATIC_THRESHOLD_M, YES_NO, QuestionKind
from spatial_mllm_ros.reward.errors import RubricError

CHECK_TYPES = ("direction", "metric", "static")
SPANS = ("step", "episode")
EPISODE_AGGREGATES = ("mean", "min", "last")
DEFAULT_SPAN = {"direction": "step", "metric": "episode", "static": "step"}


@dataclass(frozen=True)
class Check:
    """One question asked of frame pairs with its reward rule; `truth` names the sim label to grade it."""

    question: str
    type: str = "direction"
    expect: str = ""
    target_mm: float | None = None
    span: str = ""
    weight: float = 1.0
    kind: str | None = None
    truth: str = ""
    truth_equals: str = ""
    id: str = ""

    def as_question(self) -> Question:
        """Build the model-facing question (kind given or classified from the text)."""
        return Question(self.question, QuestionKind(self.kind) if self.kind else None, id=self.id)

    def reward(self, answer: Answer) -> float:
        """Score one answer (rules in the module docstring)."""
        if self.type == "metric":
            value = _magnitude(answer.value)
            if value is None or not self.target_mm:
                return 0.0
            return max(0.0, 1.0 - abs(value - self.target_mm) / self.target_mm)
        if self.type == "static":
            moved = answer_moved(answer)
            return 0.0 if moved is None else (-1.0 if moved else 1.0)
        if answer.value is None:
            return 0.0
        return 1.0 if str(answer.value).strip().lower() == self.expect else -1.0


@dataclass(frozen=True)
class Progress:
    """GVL-style progress: the first frame fixed, the rest shuffled; progress = value / scale."""

    question: str
    scale: float = 100.0
    kind: str | None = None
    frames: int = 0
    seed: int = 0
    weight: float = 1.0
    id: str = "progress"

    def as_question(self) -> Question:
        """Build the question asked of (first frame, frame j)."""
        return Question(self.question, QuestionKind(self.kind) if self.kind else None, id=self.id)

    def progress(self, answer: Answer) -> float | None:
        """Predicted task completion (0..1) of a frame, None when the answer has no number."""
        if answer.static:
            return 0.0
        value = _magnitude(answer.value)
        return None if value is None else min(1.0, max(0.0, value / self.scale))


@dataclass(frozen=True)
class Rubric:
    """A task's checks and progress question plus defaults for topic, split and sampling."""

    name: str
    checks: tuple[Check, ...] = ()
    progress: Progress | None = None
    description: str = ""
    image_topic: str | None = None
    split: str | None = None
    every: int | None = None
    count: int | None = None
    step_s: float | None = None
    episode_aggregate: str = "mean"

    @property
    def fingerprint(self) -> str:
        """Content hash: a changed rubric never resumes labels of another."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def for_episode(self, labels: dict[str, Any]) -> Rubric:
        """Fill {placeholders} in questions, expectations and truth paths from an episode's marker labels.

        e.g. "How far did the {object} move?" with a sim marker's labels {"object": "red cube", ...}.
        """
        if not any("{" in f"{c.question}{c.expect}{c.truth}" for c in self.checks) and not (
            self.progress and "{" in self.progress.question
        ):
            return self

        def fill(text: str) -> str:
            try:
                return text.format_map(labels) if "{" in text else text
            except (KeyError, IndexError, ValueError) as exc:
                raise RubricError(f"rubric {self.name}: {text!r} needs episode label {exc}") from None

        checks = []
        for c in self.checks:
            expect = fill(c.expect).lower()
            if c.type == "direction" and expect not in (*YES_NO, *DIRECTIONS):
                raise RubricError(f"rubric {self.name}: check {c.id} expects {expect!r}, not a direction")
            checks.append(replace(c, question=fill(c.question), expect=expect, truth=fill(c.truth)))
        progress = replace(self.progress, question=fill(self.progress.question)) if self.progress else None
        return replace(self, checks=tuple(checks), progress=progress)

    def checks_for(self, span: str) -> tuple[Check, ...]:
        """Select the checks asked on consecutive pairs ("step") or on first/last frame ("episode")."""
        return tuple(c for c in self.checks if c.span == span)


def _magnitude(value: Any) -> float | None:
    """Reduce a distance/angle/count value to a scalar, or a vector to its norm."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return float(sum(float(v) ** 2 for v in value) ** 0.5)
    return None


def answer_moved(answer: Answer) -> bool | None:
    """Whether an answer says something moved; None when it says nothing usable."""
    if answer.static:
        return False
    if isinstance(answer.value, str):
        low = answer.value.lower()
        if low in YES_NO:
            return low == "yes"
        return True if low in DIRECTIONS else None
    magnitude = _magnitude(answer.value)
    return None if magnitude is None else magnitude >= STATIC_THRESHOLD_M * 1000


def _build(cls: type, data: Any, where: str) -> Any:
    """Dataclass from a mapping; an unknown key is an error that names it and the known ones."""
    if not isinstance(data, dict):
        raise RubricError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise RubricError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    try:
        return cls(**data)
    except TypeError as exc:
        raise RubricError(f"{where}: {exc}") from None


def _check(data: Any, where: str, index: int) -> Check:
    check = _build(Check, data, where)
    if not str(check.question).strip():
        raise RubricError(f"{where}: 'question' is required")
    if check.type not in CHECK_TYPES:
        raise RubricError(f"{where}: type {check.type!r} is not one of {CHECK_TYPES}")
    span = check.span or DEFAULT_SPAN[check.type]
    if span not in SPANS:
        raise RubricError(f"{where}: span {span!r} is not one of {SPANS}")
    expect = str(check.expect).strip().lower() if check.expect not in (None, "") else ""
    if expect in ("true", "false"):  # YAML 1.1 reads a bare yes/no as a boolean
        expect = "yes" if expect == "true" else "no"
    if check.type == "direction" and expect not in (*YES_NO, *DIRECTIONS) and "{" not in expect:
        raise RubricError(f"{where}: direction check needs expect: one of {(*YES_NO, *DIRECTIONS)}")
    if check.type == "metric" and not (isinstance(check.target_mm, (int, float)) and check.target_mm > 0):
        raise RubricError(f"{where}: metric check needs target_mm > 0")
    if check.kind is not None and check.kind not in {k.value for k in QuestionKind}:
        raise RubricError(f"{where}: kind {check.kind!r} is not a QuestionKind")
    truth_equals = str(check.truth_equals).strip().lower()
    return Check(
        question=str(check.question), type=check.type, expect=expect,
        target_mm=float(check.target_mm) if check.target_mm is not None else None, span=span,
        weight=float(check.weight), kind=check.kind, truth=str(check.truth), truth_equals=truth_equals,
        id=check.id or f"c{index}",
    )


def parse_rubric(data: Any, source: str = "rubric") -> Rubric:
    """Validate a rubric mapping (as loaded from YAML)."""
    if not isinstance(data, dict):
        raise RubricError(f"{source}: expected a mapping at the top level")
    raw_checks = data.get("checks", []) or []
    if not isinstance(raw_checks, list):
        raise RubricError(f"{source}: 'checks' must be a list")
    body = {k: v for k, v in data.items() if k not in ("checks", "progress")}
    rubric = _build(Rubric, body, source)
    checks = tuple(_check(c, f"{source}: checks[{i}]", i) for i, c in enumerate(raw_checks))
    ids = [c.id for c in checks]
    if len(set(ids)) != len(ids):
        raise RubricError(f"{source}: check ids must be unique, got {ids}")
    progress = None
    if data.get("progress") is not None:
        progress = _build(Progress, data["progress"], f"{source}: progress")
        if progress.scale <= 0 or progress.frames < 0 or progress.frames == 1:
            raise RubricError(f"{source}: progress needs scale > 0 and frames 0 (all) or >= 2")
    if not checks and progress is None:
        raise RubricError(f"{source}: a rubric needs at least one check or a progress question")
    if rubric.episode_aggregate not in EPISODE_AGGREGATES:
        raise RubricError(f"{source}: episode_aggregate must be one of {EPISODE_AGGREGATES}")
    if not str(rubric.name).strip():
        raise RubricError(f"{source}: 'name' is required")
    return Rubric(**{**asdict(rubric), "checks": checks, "progress": progress})


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RubricError(f"rubric file {path} not found") from None
    except yaml.YAMLError as exc:
        raise RubricError(f"rubric {path}: invalid YAML: {exc}") from None
    return parse_rubric(data, str(path))


@dataclass
class CheckScores:
    """Rewards of one check over an episode, in label order."""

    check: str
    weight: float
    rewards: list[float] = field(default_factory=list)


def aggregate_episode(scores: list[CheckScores], how: str = "mean") -> float:
    """Episode reward: aggregate each check's rewards (mean/min/last), then weight-average the checks."""
    total, weights = 0.0, 0.0
    for s in scores:
        if not s.rewards:
            continue
        value = {"mean": sum(s.rewards) / len(s.rewards), "min": min(s.rewards), "last": s.rewards[-1]}[how]
        total += s.weight * value
        weights += s.weight
    return total / weights if weights else 0.0


def step_rewards(rewards_by_step: dict[int, list[tuple[float, float]]]) -> dict[int, float]:
    """Per-step reward: the weight-averaged (weight, reward) pairs of the checks asked at that step."""
    out = {}
    for step, pairs in sorted(rewards_by_step.items()):
        w = sum(p[0] for p in pairs)
        out[step] = sum(p[0] * p[1] for p in pairs) / w if w else 0.0
    return out


def rubric_text(rubric: Rubric) -> str:
    """Dump the rubric as YAML that load_rubric reads back (kept beside the labels it produced)."""
    return yaml.safe_dump(asdict(rubric), sort_keys=False)
