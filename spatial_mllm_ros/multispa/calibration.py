"""Confidence calibration: expected calibration error and temperature scaling of closed-set answers.

A model that is 96 % sure while right 2 % of the time gives a robot no warning. ECE measures that gap. A
temperature fitted on held-out answers shrinks it without changing any answer (p_i^(1/T) keeps the order
of the options); the fitted `Calibration` lives in model.calibration, which the runtime applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spatial_mllm_ros.model.calibration import Calibration, CalibrationError, log_softmax

__all__ = ["expected_calibration_error", "fit_calibration", "fit_temperature", "temperature_nll"]

ECE_BINS = 10
OOD_POWERS = tuple(np.linspace(0.0, 4.0, 17).tolist())  # how fast the temperature grows with OOD score
TEMPERATURE_RANGE = (0.01, 100.0)  # the fit's search interval; a result at an end means "as far as it goes"
_MIN_PROBABILITY = 1e-12  # a listed option the model gave 0 still costs a finite NLL


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float | None:
    """ECE (0-1) over equal-width confidence bins; None when there are no answers.

    Sum over bins of (share of answers in the bin) x |accuracy - mean confidence| in the bin. Bin b holds
    confidences in [b/bins, (b+1)/bins); the last one also holds 1.0.
    """
    conf = np.asarray(confidences, dtype=float)
    hits = np.asarray(correct, dtype=float)
    if conf.shape != hits.shape:
        raise CalibrationError(f"{conf.size} confidences for {hits.size} answers")
    if conf.size == 0:
        return None
    index = np.clip(np.floor(conf * bins), 0, bins - 1).astype(int)
    gap = 0.0
    for b in np.unique(index):
        members = index == b
        gap += members.sum() * abs(hits[members].mean() - conf[members].mean())
    return float(gap / conf.size)


def _padded_log_probs(probabilities: Sequence[Sequence[float]], labels: Sequence[int]) -> np.ndarray:
    """Ragged per-question option probabilities -> one log-probability matrix (-inf where no option)."""
    if not probabilities or len(probabilities) != len(labels):
        raise CalibrationError(f"{len(probabilities)} answers for {len(labels)} labels: nothing to fit")
    width = max(len(p) for p in probabilities)
    logp = np.full((len(probabilities), width), -np.inf)
    for row, (p, label) in enumerate(zip(probabilities, labels)):
        if not 0 <= label < len(p):
            raise CalibrationError(f"answer {row}: label {label} is not one of its {len(p)} options")
        logp[row, : len(p)] = np.log(np.maximum(np.asarray(p, dtype=float), _MIN_PROBABILITY))
    return logp


def _nll(logp: np.ndarray, labels: np.ndarray, temperature: float | np.ndarray) -> float:
    """Mean NLL of the true options at one temperature, or one per row."""
    scaled = log_softmax(logp / np.reshape(temperature, (-1, 1)))
    return float(-scaled[np.arange(len(labels)), labels].mean())


def temperature_nll(
    probabilities: Sequence[Sequence[float]], labels: Sequence[int], temperature: float
) -> float:
    """Mean negative log-likelihood of the true options after scaling by the temperature."""
    return _nll(_padded_log_probs(probabilities, labels), np.asarray(labels), temperature)


def fit_temperature(
    probabilities: Sequence[Sequence[float]], labels: Sequence[int], scale: np.ndarray | float = 1.0
) -> float:
    """Find the temperature minimising the mean NLL of the true options (labels index each one's options).

    The NLL is convex in 1/T, so a golden-section search over log T finds the minimum within
    TEMPERATURE_RANGE to about 1e-6 relative. `scale` multiplies T per answer (the OOD factor).
    """
    logp, truth = _padded_log_probs(probabilities, labels), np.asarray(labels)
    scale = np.asarray(scale, dtype=float)
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logp, truth, math.exp(a) * scale), _nll(logp, truth, math.exp(b) * scale)
    while hi - lo > 1e-7:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logp, truth, math.exp(a) * scale)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logp, truth, math.exp(b) * scale)
    return math.exp((lo + hi) / 2)


def fit_calibration(
    probabilities: Sequence[Sequence[float]],
    labels: Sequence[int],
    fitted_on: str = "",
    ood_scores: Sequence[float] | None = None,
) -> Calibration:
    """Fit the temperature (and, given each answer's OOD score, how it grows with it); record the NLL.

    With OOD scores, T * max(1, score) ** power is fitted for each power of OOD_POWERS and the pair with
    the lowest NLL kept: confidence then falls where the frames are unfamiliar, the model's blind spot.
    """
    logp, truth = _padded_log_probs(probabilities, labels), np.asarray(labels)
    ood = np.maximum(1.0, np.asarray(ood_scores if ood_scores is not None else 1.0, dtype=float))
    fits = []
    for power in OOD_POWERS if ood_scores is not None else (0.0,):
        temperature = fit_temperature(probabilities, labels, ood**power)
        fits.append((_nll(logp, truth, temperature * ood**power), temperature, power))
    nll, temperature, power = min(fits)
    return Calibration(
        temperature=temperature,
        fitted_on=fitted_on,
        questions=len(labels),
        nll_before=temperature_nll(probabilities, labels, 1.0),
        nll_after=nll,
        ood_power=power,
    )
