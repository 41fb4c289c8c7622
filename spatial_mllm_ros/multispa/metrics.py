"""The paper's benchmark metrics: per-answer correctness, per-sub-task accuracy and the Table 2 rows.

Correctness rules (Multi-SpatialMLLM, Sec. 5):
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spatial_mllm_ros.multispa.format import COORD_SCALE, STATIC_THRESHOLD_M, QuestionKind

RELATIVE_TOLERANCE = 0.2
PIXEL_TOLERANCE = 0.05  # fraction of the image width
ZERO_TOLERANCE: dict[QuestionKind, float] = {
    QuestionKind.DISTANCE: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.DEPTH: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.VECTOR: 1000 * STATIC_THRESHOLD_M,
    QuestionKind.ANGLE: 1.0,
}
NUMERIC_KINDS = frozenset(ZERO_TOLERANCE)
EXACT_KINDS = frozenset(
    {QuestionKind.DIRECTION, QuestionKind.YES_NO, QuestionKind.CHOICE, QuestionKind.COUNT, QuestionKind.FREE}
)

# The 12 grouped rows of the paper's Table 2, in its order; "Average" is their unweighted mean.
TABLE2_ROWS: tuple[str, ...] = (
    "Depth comparison",
    "Depth value",
    "Correspondence coordinate",
    "Correspondence multiple choice",
    "Camera orientation direction",
    "Camera orientation degree",
    "Camera translation direction",
    "Camera translation distance",
    "Camera translation vector",
    "Object movement distance",
    "Object movement vector",
    "Object size",
)


def _as_vector(value: object) -> list[float] | None:
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
    p, g = _as_vector(pred), _as_vector(gt)
    if p is None or g is None or len(p) != len(g) or not all(map(math.isfinite, p)):
        return False
    err = math.dist(p, g)
    gt_norm = math.hypot(*g)
    if gt_norm == 0.0:
        return err <= ZERO_TOLERANCE.get(kind, 0.0)
    return err <= RELATIVE_TOLERANCE * gt_norm


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


def pixel_correct(pred: object, gt: object, width: int | None = None, height: int | None = None) -> bool:
    """Check normalised [x, y] (0..1000) is within 5% of the image width in pixels (square if no size)."""
    p, g = _as_vector(pred), _as_vector(gt)
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


def table2_row(task: str, kind: QuestionKind | str) -> str | None:
    """Map a sub-task to its Table 2 row by family words in its name and its answer kind; None if none."""
    kind = QuestionKind(kind)
    name = task.lower()
    if name.startswith("robot"):  # our robot extensions have no row in the paper's table
        return None
    if "size" in name or any(w in name for w in ("object_height", "object_length", "object_width")):
        return "Object size"
    if "correspond" in name:
        return (
            "Correspondence coordinate"
            if kind is QuestionKind.COORDINATE
            else "Correspondence multiple choice"
        )
    if "depth" in name and "camera" not in name:
        return "Depth value" if kind is QuestionKind.DEPTH else "Depth comparison"
    if "camera" in name:
        if any(w in name for w in ("yaw", "pitch", "orientation", "rotat")):
            return (
                "Camera orientation degree" if kind is QuestionKind.ANGLE else "Camera orientation direction"
            )
        return {
            QuestionKind.DIRECTION: "Camera translation direction",
            QuestionKind.DISTANCE: "Camera translation distance",
            QuestionKind.VECTOR: "Camera translation vector",
        }.get(kind)
    if any(w in name for w in ("object", "movement", "point", "track")):
        return {
            QuestionKind.DISTANCE: "Object movement distance",
            QuestionKind.VECTOR: "Object movement vector",
        }.get(kind)
    return None


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent; unlike the normal one it stays in 0-100."""
    if total <= 0:
        return 0.0, 100.0
    p, zz = correct / total, z * z
    centre = (p + zz / (2 * total)) / (1 + zz / total)
    half = z * math.sqrt(p * (1 - p) / total + zz / (4 * total * total)) / (1 + zz / total)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


@dataclass
class SubtaskScore:
    """Accuracy of one sub-task."""

    task: str
    kind: str
    correct: int = 0
    total: int = 0
    unparsed: int = 0
    zero_correct: int = 0  # numeric kinds: of the answers whose ground truth is zero ("did not move")
    zero_total: int = 0

    @property
    def accuracy(self) -> float:
        """Percentage correct (0 when empty)."""
        return 100.0 * self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the accuracy, in percent (0-100 when empty).

        A sub-task of 100 questions reads 89 % for anything from about 81 to 94 % true accuracy, so a
        gap of a few points between two models, or to a bar, is often not a gap at all.
        """
        return wilson_interval(self.correct, self.total)


@dataclass
class Scores:
    """Per-sub-task accuracies plus the Table 2 grouped rows and their average."""

    subtasks: dict[str, SubtaskScore] = field(default_factory=dict)

    def add(
        self, task: str, kind: QuestionKind | str, correct: bool, parsed: bool = True, zero: bool = False
    ) -> None:
        """Count one scored answer (zero: a numeric one whose ground truth is zero)."""
        s = self.subtasks.setdefault(task, SubtaskScore(task, QuestionKind(kind).value))
        s.total += 1
        s.correct += int(correct)
        s.unparsed += int(not parsed)
        s.zero_total += int(zero)
        s.zero_correct += int(zero and correct)

    @property
    def total(self) -> int:
        """Number of scored answers."""
        return sum(s.total for s in self.subtasks.values())

    @property
    def correct(self) -> int:
        """Number of correct answers."""
        return sum(s.correct for s in self.subtasks.values())

    @property
    def overall(self) -> float:
        """Micro-averaged accuracy over all answers."""
        return 100.0 * self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the overall accuracy, in percent."""
        return wilson_interval(self.correct, self.total)

    def table2(self) -> dict[str, float | None]:
        """Return the grouped rows (sample-weighted within a row, as the paper pools); None if absent."""
        sums: dict[str, list[int]] = {}
        for s in self.subtasks.values():
            row = table2_row(s.task, s.kind)
            if row is not None:
                acc = sums.setdefault(row, [0, 0])
                acc[0] += s.correct
                acc[1] += s.total
        return {
            r: (100.0 * sums[r][0] / sums[r][1] if r in sums and sums[r][1] else None) for r in TABLE2_ROWS
        }

    def table2_average(self) -> float | None:
        """Unweighted mean of the Table 2 rows present (all 12 on the full benchmark)."""
        vals = [v for v in self.table2().values() if v is not None]
        return sum(vals) / len(vals) if vals else None

    def to_json(self) -> dict[str, object]:
        """Plain dict for a JSON report."""
        return {
            "total": self.total,
            "overall": self.overall,
            "overall_interval95": list(self.interval),
            "subtasks": {
                k: {
                    "kind": s.kind,
                    "accuracy": s.accuracy,
                    "interval95": list(s.interval),
                    "correct": s.correct,
                    "total": s.total,
                    "unparsed": s.unparsed,
                    **({"zero_truth": [s.zero_correct, s.zero_total]} if s.zero_total else {}),
                }
                for k, s in sorted(self.subtasks.items())
            },
            "table2": self.table2(),
            "table2_average": self.table2_average(),
            "table2_rows_present": sum(v is not None for v in self.table2().values()),
        }

    def to_markdown(self, title: str = "Evaluation") -> str:
        """Per-sub-task table and the grouped Table 2 rows as Markdown."""
        lines = [
            f"### {title}",
            "",
            "| sub-task | kind | accuracy % | 95 % interval | n | unparsed |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.task} | {s.kind} | {s.accuracy:.2f} | {_span(s.interval)} | {s.total} | {s.unparsed} |"
            for _, s in sorted(self.subtasks.items())
        ]
        lines.append(f"| **all** | | {self.overall:.2f} | {_span(self.interval)} | {self.total} | |")
        lines += self._zero_split()
        table = self.table2()
        present = [r for r in TABLE2_ROWS if table[r] is not None]
        if present:
            avg = self.table2_average()
            lines += [
                "",
                f"Table 2 rows ({len(present)} of {len(TABLE2_ROWS)} present)",
                "",
                "| row | accuracy % |",
                "|---|---|",
                f"| Average | {avg:.2f} |",
            ]
            lines += [
                f"| {r} | {table[r]:.2f} |" if table[r] is not None else f"| {r} | - |" for r in TABLE2_ROWS
            ]
        return "\n".join(lines) + "\n"

    def _zero_split(self) -> list[str]:
        """Numeric sub-tasks split by zero / non-zero ground truth, where both occur.

        A zero truth ("did not move") is matched within the zero tolerance, so a model that always
        answers 0 scores the zero share of a sub-task; this table shows when an accuracy is only that.
        """
        split = [s for _, s in sorted(self.subtasks.items()) if s.zero_total]
        if not split:
            return []
        lines = [
            "",
            "Numeric sub-tasks by ground truth (a model that always answers 0 scores the zero share):",
            "",
            "| sub-task | zero truth: right / n | non-zero truth: right / n |",
            "|---|---|---|",
        ]
        for s in split:
            moved, moved_right = s.total - s.zero_total, s.correct - s.zero_correct
            lines.append(f"| {s.task} | {s.zero_correct} / {s.zero_total} | {moved_right} / {moved} |")
        return lines


def _span(interval: tuple[float, float]) -> str:
    return f"{interval[0]:.1f}-{interval[1]:.1f}"


def score_all(
    items: Iterable[tuple[str, QuestionKind | str, object, object, Sequence[int] | None]],
) -> Scores:
    """Score (task, kind, pred_value, gt_value, (width, height) or None) tuples into a Scores table."""
    scores = Scores()
    for task, kind, pred, gt, size in items:
        w, h = (size[0], size[1]) if size else (None, None)
        truth = _as_vector(gt) if QuestionKind(kind) in NUMERIC_KINDS else None
        zero = truth is not None and not any(truth)
        scores.add(task, kind, is_correct(kind, pred, gt, w, h), parsed=pred is not None, zero=zero)
    return scores
