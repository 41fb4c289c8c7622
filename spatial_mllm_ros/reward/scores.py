"""Rank statistics used for progress (VOC) and success/failure separation (AUC)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation; 0.0 when either side is constant or too short (GVL's convention)."""
    if len(a) != len(b) or len(a) < 2:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def value_order_correlation(values_in_time_order: Sequence[float]) -> float:
    """GVL's VOC: Spearman of predicted progress against the true frame order (-1..1)."""
    return spearman(values_in_time_order, list(range(len(values_in_time_order))))


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Probability that a positive scores above a negative (ties count half); None if a side is empty."""
    if len(positive) == 0 or len(negative) == 0:  # len, not truth: numpy arrays come from the bootstrap
        return None
    pos, neg = np.asarray(positive, dtype=float)[:, None], np.asarray(negative, dtype=float)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))
