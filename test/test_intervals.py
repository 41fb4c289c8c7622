"""The intervals against hand-computable cases (Wilson's worked examples: test_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_mllm_ros.intervals import bootstrap_interval, mean_interval, wilson_interval
from spatial_mllm_ros.reward.scores import auc


def test_perfect_separation_and_all_ties_are_points() -> None:
    """Every resample of a perfectly separated pair of groups separates too; all-equal rewards tie always."""
    assert bootstrap_interval(auc, [0.9, 0.8, 0.7], [0.1, 0.2]) == (1.0, 1.0)
    assert bootstrap_interval(auc, [0.1, 0.2], [0.9, 0.8, 0.7]) == (0.0, 0.0)
    assert bootstrap_interval(auc, [0.5, 0.5], [0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_ties_count_half_and_each_group_is_resampled_apart() -> None:
    """Positives [1, 1] against negatives [1, 0]: AUC (0.5 + 1 + 0.5 + 1) / 4 = 0.75.

    The positives resample to [1, 1] always; the negatives to [1, 1] (AUC 0.5) or [0, 0] (AUC 1.0) a
    quarter of the time each, so the 2.5 % and 97.5 % points are 0.5 and 1.0.
    """
    assert auc([1.0, 1.0], [1.0, 0.0]) == 0.75
    assert bootstrap_interval(auc, [1.0, 1.0], [1.0, 0.0]) == (0.5, 1.0)


def test_mean_interval_of_constant_and_empty() -> None:
    assert mean_interval([0.0] * 8) == (0.0, 0.0)
    assert mean_interval([]) is None
    assert bootstrap_interval(auc, [1.0], []) is None


def test_intervals_are_seeded_and_cover_the_estimate() -> None:
    values = list(np.random.default_rng(1).normal(10.0, 2.0, 40))
    low, high = mean_interval(values)
    assert (low, high) == mean_interval(values)  # the same data gives the same interval
    assert low < float(np.mean(values)) < high
    # the normal-theory half-width 1.96 * s / sqrt(n) is what the bootstrap approaches at n = 40
    half = 1.96 * float(np.std(values)) / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half, rel=0.2)


def test_wilson_interval_holds_its_estimate_at_none_and_all_right() -> None:
    """At 0 of n and n of n the ends are exactly 0 and 100 (rounding once left 6 of 6 below 100 %)."""
    for n in range(1, 200):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 100.0, n
        for correct in range(n + 1):
            low, high = wilson_interval(correct, n)
            assert low <= 100.0 * correct / n <= high, (correct, n)
