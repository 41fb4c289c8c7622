"""Typed errors of the model runtime: each names the bad thing so a caller (node, CLI) can say what to fix."""

from __future__ import annotations

from collections.abc import Sequence

from spatial_mllm_ros.errors import SpatialMllmError


class ModelError(SpatialMllmError):
    """Base class of every model-runtime error."""


class ModelLoadError(ModelError):
    """A checkpoint could not be loaded."""


class CheckpointNotFoundError(ModelLoadError):
    """The checkpoint directory (or a file it needs) does not exist."""

    def __init__(self, path: str, what: str = "checkpoint directory") -> None:
        super().__init__(f"{what} not found: {path}")
        self.path = path


class CorruptCheckpointError(ModelLoadError):
    """A checkpoint file exists but cannot be read (truncated or not safetensors)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt checkpoint file {path}: {reason}")
        self.path = path


class UnknownFamilyError(ModelLoadError):
    """The model family is not one the runtime supports."""

    def __init__(self, family: str, supported: Sequence[str]) -> None:
        super().__init__(f"unknown model family {family!r}; supported: {', '.join(supported)}")
        self.family = family


class UnsafeCheckpointError(ModelLoadError):
    """The checkpoint needs something we refuse by default (remote code, pickle weights)."""


class InputError(ModelError, ValueError):
    """A request to the model is malformed (frames or question)."""


class FrameError(InputError):
    """A frame has the wrong type, dtype or shape, or there are zero frames."""


class TooManyFramesError(InputError):
    """More frames than allowed, or their visual tokens do not fit the model's context."""

    def __init__(self, n_frames: int, limit: int, tokens: int | None = None) -> None:
        if tokens is None:
            msg = f"{n_frames} frames given, at most max_frames={limit} per question"
        else:
            msg = (
                f"{n_frames} frames need {tokens} tokens but the context allows {limit}; "
                "ask with fewer frames or fewer tiles (max_tiles)"
            )
        super().__init__(msg)
        self.n_frames, self.tokens, self.limit = n_frames, tokens, limit


class QuestionError(InputError):
    """The question is empty, too long or not text."""


class BackendUnavailableError(ModelError):
    """A vision backend cannot run here (missing package, no GPU, no exported graph)."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"vision backend {backend!r} unavailable: {reason}")
        self.backend, self.reason = backend, reason


class ExportError(ModelError):
    """Exporting the vision encoder (ONNX/TensorRT) failed or did not match PyTorch."""
