"""The paper's benchmark metrics over many answers: per-sub-task accuracy, intervals and the Table 2 rows.

Whether one answer is right is decided by spatial_mllm_ros.conventions.is_correct (the paper's rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spatial_mllm_ros.conventions import NUMERIC_KINDS, QuestionKind, as_vector, is_correct
from spatial_mllm_ros.intervals import wilson_interval

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
        truth = as_vector(gt) if QuestionKind(kind) in NUMERIC_KINDS else None
        zero = truth is not None and not any(truth)
        scores.add(task, kind, is_correct(kind, pred, gt, w, h), parsed=pred is not None, zero=zero)
    return scores
