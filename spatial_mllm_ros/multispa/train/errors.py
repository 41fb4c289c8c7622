"""Typed errors of training and evaluation."""

from __future__ import annotations


class TrainError(Exception):
    """Base class of training errors."""


class TrainConfigError(TrainError, ValueError):
    """A training config with an unknown key or a value out of range; names the key."""


class FamilyMismatchError(TrainError):
    """A checkpoint whose model family differs from the family the config asks for."""

    def __init__(self, checkpoint: str, found: str, expected: str) -> None:
        self.checkpoint, self.found, self.expected = checkpoint, found, expected
        super().__init__(
            f"checkpoint {checkpoint} is a {found!r} model but the config says family={expected!r}; "
            f"set family: {found} (or auto) or point `model` at a {expected} checkpoint"
        )


class ResumeError(TrainError):
    """A resume directory that is missing files or belongs to another run."""


class NoTrainingDataError(TrainError):
    """Every sample was skipped (or none was given): nothing to train on; carries the skip counts."""

    def __init__(self, skipped: dict[str, int]) -> None:
        self.skipped = dict(skipped)
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no samples"
        super().__init__(f"no usable training samples ({detail})")


class HeldOutSplitError(TrainError, ValueError):
    """Held-out data that cannot be split off by recording, or shares recordings with the training data."""
