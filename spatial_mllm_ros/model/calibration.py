"""A checkpoint's confidence calibration: the temperature the runtime applies to closed-set probabilities.

Fitted on held-out answers by `multispa.calibration` (or `spatial-mllm evaluate --fit-temperature`) and kept
as `calibration.json` next to the checkpoint's config.json. p_i^(1/T), renormalised, never changes which
option is likeliest, only how sure the answer says it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["CALIBRATION_FILE", "Calibration", "CalibrationError", "apply_temperature", "load_calibration",
           "log_softmax", "save_calibration"]

CALIBRATION_FILE = "calibration.json"  # next to the checkpoint's config.json


class CalibrationError(ValueError):
    """A calibration file or fit input that cannot be used; says which and why."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities from logits along the last axis, stable for large values."""
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def apply_temperature(probabilities: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Rescale one answer's option probabilities: p_i^(1/T), renormalised (T > 1 softens, T < 1 sharpens)."""
    if not temperature > 0:
        raise CalibrationError(f"temperature must be > 0, got {temperature}")
    keys = list(probabilities)
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray([probabilities[k] for k in keys], dtype=float))
    return dict(zip(keys, np.exp(log_softmax(logp / temperature)).tolist()))


@dataclass(frozen=True)
class Calibration:
    """A temperature for closed-set probabilities, fitted on held-out answers, kept with a checkpoint."""

    temperature: float
    fitted_on: str = ""  # the held-out set's name
    questions: int = 0
    nll_before: float | None = None
    nll_after: float | None = None
    # Unfamiliar frames get a higher temperature: T * max(1, ood_score) ** ood_power (0: one temperature).
    ood_power: float = 0.0

    def temperature_for(self, ood_score: float | None = None) -> float:
        """Return the temperature for an answer whose frames scored `ood_score` (None: familiar)."""
        return self.temperature * max(1.0, ood_score or 0.0) ** self.ood_power

    def apply(self, probabilities: Mapping[str, float], ood_score: float | None = None) -> dict[str, float]:
        """Rescale one answer's option probabilities with the temperature for its frames."""
        return apply_temperature(probabilities, self.temperature_for(ood_score))


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
