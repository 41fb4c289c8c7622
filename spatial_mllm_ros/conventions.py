"""The conventions every part agrees on: how a question is asked, how an answer is written and scored.

The one place where training data, the runtime and the annotator agree on the conversation format, answer
values (kinds, units, directions, coordinates), the "did not move" thresholds, the paper's correctness
rules and the numeric-answer decision (best_numeric_answer). It is the bottom layer: the runtime (model/),
the data engine (multispa/), the simulation (sim/), the annotator (reward/), answer parsing and the node
import it; it imports nothing of the package.

Correctness follows Multi-SpatialMLLM, Sec. 5:
- qualitative and multiple-choice answers (direction, yes/no, letters, counts, text): exact match;
- scalars and vectors (distance, depth, angle, vector): correct iff |pred - gt|_2 <= 0.2 * |gt|_2;
- pixel coordinates (0..1000 scale per axis): correct iff within 5% of the image width, in pixels.
The paper leaves a zero ground truth undefined (0.2 * 0 admits only an exact zero); we define it:
a zero ground truth is matched by a prediction within an absolute tolerance, ZERO_TOLERANCE per kind
(10 mm for lengths, the "did not move" threshold; 1 degree for angles).
"""

from __future__ import annotations

import bisect
import itertools
import math
from enum import Enum
from typing import Any

import numpy as np

IMAGE_TOKEN = "<image>"
COORD_SCALE = 1000  # pixel coordinates are written on a 0..COORD_SCALE scale per axis
STATIC_THRESHOLD_M = 0.01  # a point that moved less than this (metres) "did not move"
DID_NOT_MOVE = "The point did not move."
LENGTH_UNIT = "mm"
ANGLE_UNIT = "degrees"
PIXEL_UNIT = "px"
NORM_COORD_UNIT = "norm1000"  # coordinates on the 0..COORD_SCALE scale

# Camera optical frame: left = -x, right = +x, up = -y, down = +y, forward = +z, backward = -z.
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "forward", "backward")
OPPOSITE_DIRECTION: dict[str, str] = {
    "left": "right", "right": "left", "up": "down", "down": "up",
    "forward": "backward", "backward": "forward",
}
# Unit vectors of the direction words in the camera optical frame (x right, y down, z forward).
DIRECTION_VECTORS: dict[str, tuple[float, float, float]] = dict(
    zip(
        DIRECTIONS,
        (
            (-1.0, 0.0, 0.0),
            (1.0, 0.0, 0.0),
            (0.0, -1.0, 0.0),
            (0.0, 1.0, 0.0),
            (0.0, 0.0, 1.0),
            (0.0, 0.0, -1.0),
        ),
    )
)
YES_NO: tuple[str, ...] = ("yes", "no")
CHOICE_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


class QuestionKind(str, Enum):
    """What type of value answers a question; decides task description, parsing and scoring."""

    DIRECTION = "direction"
    YES_NO = "yes_no"
    DISTANCE = "distance"
    ANGLE = "angle"
    DEPTH = "depth"
    COORDINATE = "coordinate"
    VECTOR = "vector"
    CHOICE = "choice"
    COUNT = "count"
    FREE = "free"


class AnswerStage(str, Enum):
    """Where a question is on its way to an answer: the node waits for frames, the runtime does the rest."""

    WAITING_FOR_FRAMES = "waiting_for_frames"
    VISION = "vision"
    LANGUAGE = "language"


# The unit each kind's value is written in (None: unitless).
KIND_UNIT: dict[QuestionKind, str | None] = {
    QuestionKind.DIRECTION: None,
    QuestionKind.YES_NO: None,
    QuestionKind.DISTANCE: LENGTH_UNIT,
    QuestionKind.ANGLE: ANGLE_UNIT,
    QuestionKind.DEPTH: LENGTH_UNIT,
    QuestionKind.COORDINATE: None,  # 0..COORD_SCALE normalised
    QuestionKind.VECTOR: LENGTH_UNIT,
    QuestionKind.CHOICE: None,
    QuestionKind.COUNT: None,
    QuestionKind.FREE: None,
}

RELATIVE_TOLERANCE = 0.2
PIXEL_TOLERANCE = 0.05  # fraction of the image width
ZERO_TOLERANCE: dict[QuestionKind, float] = {
    QuestionKind.DISTANCE: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.DEPTH: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.VECTOR: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.ANGLE: 1.0,
}
NUMERIC_KINDS = frozenset(ZERO_TOLERANCE)

# ---------------------------------------------------------------- the conversation format

_TASK_DESCRIPTIONS: dict[QuestionKind, str] = {
    QuestionKind.DIRECTION: (
        "The images are frames from a camera observing a scene. Answer with one direction "
        "(left, right, up, down, forward or backward) between backticks."
    ),
    QuestionKind.YES_NO: "The images show a scene over time. Answer `yes` or `no` between backticks.",
    QuestionKind.DISTANCE: (
        "The images are frames from a camera observing a scene. Give the distance in millimetres "
        "as an integer between backticks."
    ),
    QuestionKind.ANGLE: (
        "The images are frames from a rotating camera. Give the rotation angle in degrees as an "
        "integer between backticks."
    ),
    QuestionKind.DEPTH: (
        "Depth is the distance from the camera along its viewing axis. Give it in millimetres as an "
        "integer between backticks."
    ),
    QuestionKind.COORDINATE: (
        f"Pixel coordinates are written as [ x , y ] on a 0 to {COORD_SCALE} scale of the image width "
        "and height. Answer with coordinates between backticks."
    ),
    QuestionKind.VECTOR: (
        "Vectors are written as [ x , y , z ] in millimetres in the first camera's frame (x right, "
        "y down, z forward). Answer with a vector between backticks."
    ),
    QuestionKind.CHOICE: "Choose one of the labelled options and answer with its letter between backticks.",
    QuestionKind.COUNT: "Answer with a whole number between backticks.",
    QuestionKind.FREE: "Answer the question about the images briefly.",
}


def task_description(kind: QuestionKind | str) -> str:
    """Default task description line for a question kind (templates may supply paraphrases)."""
    return _TASK_DESCRIPTIONS[QuestionKind(kind)]


def image_prefix(n_images: int) -> str:
    """Return the image placeholder lines that open a prompt: "Image-k: <image>" each, bare for one image."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    if n_images == 1:
        return f"{IMAGE_TOKEN}\n"
    return "".join(f"Image-{i}: {IMAGE_TOKEN}\n" for i in range(1, n_images + 1))


def build_prompt(n_images: int, task_description: str, question: str) -> str:
    """Assemble the human turn: image placeholders, then the task description, then the question."""
    parts = [image_prefix(n_images)]
    if task_description:
        parts.append(task_description.strip() + "\n")
    parts.append(question.strip())
    return "".join(parts)


# ---------------------------------------------------------------- answer values


def _int(x: float) -> int:
    return int(round(float(x)))


def format_value(kind: QuestionKind | str, value: Any) -> str:
    """Write an answer value between backticks: "`left`", "`2249`", "`[ 512 , 300 ]`", "`[ 1 , -2 , 3 ]`"."""
    kind = QuestionKind(kind)
    if kind in (QuestionKind.COORDINATE, QuestionKind.VECTOR):
        return "`[ " + " , ".join(str(_int(v)) for v in value) + " ]`"
    if kind in (QuestionKind.DISTANCE, QuestionKind.ANGLE, QuestionKind.DEPTH, QuestionKind.COUNT):
        return f"`{_int(value)}`"
    if kind is QuestionKind.YES_NO:
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value).strip().lower()
        return f"`{text}`"
    if kind is QuestionKind.CHOICE:
        return f"`{str(value).strip().upper()}`"
    if kind is QuestionKind.DIRECTION:
        return f"`{str(value).strip().lower()}`"
    return f"`{value}`"


def to_norm_coords(u: float, v: float, width: int, height: int) -> tuple[int, int]:
    """Pixel (u, v) -> [x, y] on the 0..COORD_SCALE scale: x = round(1000*u/W), y = round(1000*v/H)."""
    return _int(COORD_SCALE * u / width), _int(COORD_SCALE * v / height)


def from_norm_coords(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Normalised [x, y] (0..COORD_SCALE) -> pixel (u, v) for a frame of width x height."""
    return x * width / COORD_SCALE, y * height / COORD_SCALE


def direction_of(vector_cam: np.ndarray) -> str:
    """Name the direction of a camera-frame vector: its dominant axis and sign."""
    v = np.asarray(vector_cam, float)
    return max(DIRECTIONS, key=lambda d: float(v @ DIRECTION_VECTORS[d]))


# ---------------------------------------------------------------- when an answer is right


def as_vector(value: object) -> list[float] | None:
    """Return a numeric answer value as a list of floats; None when it is not a number or list of them."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            return None
    return None


def _norm_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).strip().strip("`").strip().rstrip(".").lower().split())


def numeric_correct(kind: QuestionKind | str, pred: object, gt: object) -> bool:
    """Relative L2 error <= 20% (scalars and vectors); zero ground truth uses ZERO_TOLERANCE."""
    kind = QuestionKind(kind)
    p, g = as_vector(pred), as_vector(gt)
    if p is None or g is None or len(p) != len(g) or not all(map(math.isfinite, p)):
        return False
    err = math.dist(p, g)
    gt_norm = math.hypot(*g)
    if gt_norm == 0.0:
        return err <= ZERO_TOLERANCE.get(kind, 0.0)
    return err <= RELATIVE_TOLERANCE * gt_norm


def pixel_correct(pred: object, gt: object, width: int | None = None, height: int | None = None) -> bool:
    """Check normalised [x, y] (0..1000) is within 5% of the image width in pixels (square if no size)."""
    p, g = as_vector(pred), as_vector(gt)
    if p is None or g is None or len(p) != 2 or len(g) != 2:
        return False
    w = float(width) if width else float(COORD_SCALE)
    h = float(height) if height else w
    dx = (p[0] - g[0]) * w / COORD_SCALE
    dy = (p[1] - g[1]) * h / COORD_SCALE
    return math.hypot(dx, dy) <= PIXEL_TOLERANCE * w


def is_correct(
    kind: QuestionKind | str, pred: object, gt: object, width: int | None = None, height: int | None = None
) -> bool:
    """Score one parsed answer value against the ground-truth value with the paper's rule for its kind."""
    kind = QuestionKind(kind)
    if pred is None:
        return False
    if kind is QuestionKind.COORDINATE:
        return pixel_correct(pred, gt, width, height)
    if kind in NUMERIC_KINDS:
        return numeric_correct(kind, pred, gt)
    return _norm_text(pred) == _norm_text(gt)


def best_numeric_answer(kind: QuestionKind | str, distribution: dict[int, float]) -> tuple[int, float]:
    """Pick the value most likely to be scored correct, and that likelihood, from a value distribution.

    Greedy digit-by-digit decoding commits to the first digit before it has weighed the rest: it says
    "111" when the mass is spread over 90-150. Under the paper's rule the best single answer is the value
    whose tolerance window holds the most probability (the Bayes decision for this metric). Guesses are
    kept to what the answer convention can mean: 0 ("did not move", which takes every value under the
    zero tolerance) or a value at or over it, so a likely zero never turns into a borderline 10 mm. The
    values (non-negative) need not sum to one (a pruned distribution); the likelihood is relative to what
    is there.
    """
    total = sum(distribution.values())
    if not distribution or total <= 0:
        raise ValueError("empty value distribution")
    zero = ZERO_TOLERANCE.get(QuestionKind(kind), 0.0)
    still, moved = 0.0, []
    for t, p in distribution.items():
        if t == 0 or abs(t) < zero:
            still += p
        else:
            moved.append((t, p))
    moved.sort()
    truths = [t for t, _ in moved]
    cum = list(itertools.accumulate((p for _, p in moved), initial=0.0))
    lo, hi = 1 - RELATIVE_TOLERANCE, 1 + RELATIVE_TOLERANCE

    def window(v: int) -> float:
        """Probability of the truths v is right for: lo t <= v <= hi t, a run of the sorted ones."""
        a, b = bisect.bisect_left(truths, v / hi), bisect.bisect_right(truths, v / lo)
        # the metric itself decides the run's ends, whatever the rounding of the bounds
        while a > 0 and numeric_correct(kind, v, truths[a - 1]):
            a -= 1
        while a < b and not numeric_correct(kind, v, truths[a]):
            a += 1
        while b < len(truths) and numeric_correct(kind, v, truths[b]):
            b += 1
        while b > a and not numeric_correct(kind, v, truths[b - 1]):
            b -= 1
        return cum[b] - cum[a]

    # a guess's window only changes where v crosses lo t or hi t: those points and the values themselves
    # are all the guesses worth weighing
    guesses = {g for t in truths for g in (t, math.ceil(lo * t), math.floor(hi * t)) if abs(g) >= zero and g}
    mass = {v: window(v) for v in guesses}
    best = max(sorted(guesses), key=lambda v: (mass[v], distribution.get(v, 0.0)), default=0)
    if not guesses or still >= mass[best]:
        return 0, still / total
    return best, mass[best] / total
