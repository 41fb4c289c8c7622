"""The bars a sub-task's accuracy has to clear: chance, and the best answer that ignores the frames.

- chance: the mean over questions of 1 / number of options (closed answer sets). Open answers (numbers,
  vectors, pixels, free text) have no finite option set and no chance level (None); the baseline below
  is their bar.
- baseline: the accuracy of one constant answer given to every question, scored by the metric:
  exact-match kinds: the commonest ground-truth answer of the sub-task (the majority baseline);
  numeric kinds: 0 (a zero vector for vectors), "did not move", which scores the zero-truth share;
  pixel coordinates: the image centre.
- beats_baseline: the 95 % Wilson interval of the accuracy lies wholly above the baseline (its lower bound
  is higher), so the margin is not sampling noise. The margin itself (accuracy - baseline) is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spatial_mllm_ros.conventions import COORD_SCALE, NUMERIC_KINDS, QuestionKind, format_value, is_correct
from spatial_mllm_ros.intervals import wilson_interval

__all__ = ["Baseline", "beats_baseline", "chance_level", "constant_baseline"]


@dataclass(frozen=True)
class Baseline:
    """A constant answer and the accuracy (percent) it gets on a sub-task."""

    answer: str
    accuracy: float


def chance_level(options: Sequence[Sequence[str] | None]) -> float | None:
    """Percent right by guessing uniformly among each question's options; None if any question is open."""
    if not options or any(not o for o in options):
        return None
    return 100.0 * sum(1.0 / len(o) for o in options) / len(options)


def _constant_guesses(kind: QuestionKind, truths: Sequence[Any]) -> list[Any]:
    if kind is QuestionKind.COORDINATE:
        return [[COORD_SCALE // 2, COORD_SCALE // 2]]
    if kind in NUMERIC_KINDS:
        shapes = {len(t) if isinstance(t, (list, tuple)) else 0 for t in truths if t is not None}
        return [[0] * n if n else 0 for n in sorted(shapes)] or [0]
    distinct = {str(t): t for t in truths if t is not None}  # first seen first: ties go to it
    return list(distinct.values())


def constant_baseline(
    kind: QuestionKind | str, truths: Sequence[Any], sizes: Sequence[tuple[int, int] | None] | None = None
) -> Baseline:
    """Best of the constant answers the module docstring names for this kind, scored by the metric."""
    kind = QuestionKind(kind)
    sizes = sizes if sizes is not None else [None] * len(truths)

    def score(guess: Any) -> Baseline:
        right = sum(is_correct(kind, guess, t, *(size or (None, None))) for t, size in zip(truths, sizes))
        return Baseline(format_value(kind, guess).strip("`"), 100.0 * right / len(truths))

    if not truths:
        return Baseline("", 0.0)
    # max keeps the first of equals: a tie goes to the answer seen first
    guesses = _constant_guesses(kind, truths)
    return max(map(score, guesses), key=lambda b: b.accuracy, default=Baseline("", 0.0))


def beats_baseline(correct: int, total: int, baseline: float) -> bool:
    """Whether the accuracy's 95 % Wilson lower bound is above the baseline (percent)."""
    return total > 0 and wilson_interval(correct, total)[0] > baseline
