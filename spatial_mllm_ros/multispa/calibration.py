"""Confidence calibration: expected calibration error and temperature scaling of closed-set answers.

A model that is 96 % sure while right 2 % of the time gives a robot no warning. ECE measures that gap. A
temperature fitted on held-out answers shrinks it without changing any answer (p_i^(1/T) keeps the order
of the options), and it is saved with the checkpoint (`calibration.json`) for the runtime to apply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "CalibrationError",
    "apply_temperature",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "load_calibration",
    "save_calibration",
    "temperature_nll",
]

ECE_BINS = 10
CALIBRATION_FILE = "calibration.json"  # next to the checkpoint's config.json
TEMPERATURE_RANGE = (0.01, 100.0)  # the fit's search interval; a result at an end means "as far as it goes"
_MIN_PROBABILITY = 1e-12  # a listed option the model gave 0 still costs a finite NLL


class CalibrationError(ValueError):
    """A calibration file or fit input that cannot be used; says which and why."""


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


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def apply_temperature(probabilities: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Rescale one answer's option probabilities: p_i^(1/T), renormalised (T > 1 softens, T < 1 sharpens)."""
    if not temperature > 0:
        raise CalibrationError(f"temperature must be > 0, got {temperature}")
    keys = list(probabilities)
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray([probabilities[k] for k in keys], dtype=float))
    return dict(zip(keys, np.exp(_log_softmax(logp / temperature)).tolist()))


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


def _nll(logp: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = _log_softmax(logp / temperature)
    return float(-scaled[np.arange(len(labels)), labels].mean())


def temperature_nll(
    probabilities: Sequence[Sequence[float]], labels: Sequence[int], temperature: float
) -> float:
    """Mean negative log-likelihood of the true options after scaling by the temperature."""
    return _nll(_padded_log_probs(probabilities, labels), np.asarray(labels), temperature)


def fit_temperature(probabilities: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """Find the temperature minimising the mean NLL of the true options (labels index each one's options).

    The NLL is convex in 1/T, so a golden-section search over log T finds the minimum within
    TEMPERATURE_RANGE to about 1e-6 relative.
    """
    logp, truth = _padded_log_probs(probabilities, labels), np.asarray(labels)
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logp, truth, math.exp(a)), _nll(logp, truth, math.exp(b))
    while hi - lo > 1e-7:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logp, truth, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logp, truth, math.exp(b))
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True)
class Calibration:
    """A temperature for closed-set probabilities, fitted on held-out answers, kept with a checkpoint."""

    temperature: float
    fitted_on: str = ""  # the held-out set's name
    questions: int = 0
    nll_before: float | None = None
    nll_after: float | None = None

    def apply(self, probabilities: Mapping[str, float]) -> dict[str, float]:
        """Rescale one answer's option probabilities with this temperature."""
        return apply_temperature(probabilities, self.temperature)


def fit_calibration(
    probabilities: Sequence[Sequence[float]], labels: Sequence[int], fitted_on: str = ""
) -> Calibration:
    """Fit the temperature and record what it did to the NLL on the data it was fitted on."""
    temperature = fit_temperature(probabilities, labels)
    return Calibration(
        temperature=temperature,
        fitted_on=fitted_on,
        questions=len(labels),
        nll_before=temperature_nll(probabilities, labels, 1.0),
        nll_after=temperature_nll(probabilities, labels, temperature),
    )


def save_calibration(calibration: Calibration, directory: str | Path) -> Path:
    """Write DIR/calibration.json (next to a checkpoint's config.json); returns its path."""
    path = Path(directory) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(calibration), indent=2) + "\n")
    return path


def load_calibration(directory: str | Path) -> Calibration | None:
    """Read DIR/calibration.json; None when the checkpoint has none (its probabilities stand as they are)."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        calibration = Calibration(**json.loads(path.read_text()))
        temperature = float(calibration.temperature)
    except (ValueError, TypeError) as exc:
        raise CalibrationError(f"{path}: not a calibration file ({exc})") from exc
    if not (math.isfinite(temperature) and temperature > 0):
        raise CalibrationError(f"{path}: temperature must be positive and finite, got {temperature}")
    return calibration
