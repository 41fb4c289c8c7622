"""The 95 % intervals every evaluation reports, in one place: Wilson for proportions, bootstrap otherwise.

The data engine's benchmark tables (multispa) and the reward annotator's grades (reward) both import
them, so an interval means the same in every report. This module imports nothing of the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

LEVEL = 0.95
Z95 = 1.96  # the normal quantile of a two-sided 95 % interval
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by < 0.01 between seeds at n = 8
SEED = 0  # bootstrap intervals are seeded: the same data always gives the same interval


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent; unlike the normal one it stays in 0-100."""
    if total <= 0:
        return 0.0, 100.0
    p, zz = correct / total, z * z
    centre = (p + zz / (2 * total)) / (1 + zz / total)
    half = z * math.sqrt(p * (1 - p) / total + zz / (4 * total * total)) / (1 + zz / total)
    # at none or all right the end is exactly 0 or 100; rounding would otherwise leave the estimate outside
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return 100.0 * low, 100.0 * high


def bootstrap_interval(
    statistic: Callable[..., float], *groups: Sequence[float], resamples: int = RESAMPLES,
    level: float = LEVEL, seed: int = SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of statistic(*groups), each group resampled apart; None if one is empty.

    Each group keeps its size in every resample (a stratified bootstrap), so a two-group statistic such
    as the AUC of successes against failures never meets a resample with one side missing. The unit
    resampled is whatever the groups hold: pass one value per episode to resample episodes.
    """
    arrays = [np.asarray(g, dtype=float) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        return None
    rng = np.random.default_rng(seed)
    values = [statistic(*(a[rng.integers(0, a.size, a.size)] for a in arrays)) for _ in range(resamples)]
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """Bootstrap interval of a mean (None when there is no value)."""
    return bootstrap_interval(np.mean, values)
