"""Core typed errors: each names the bad thing so a log line is enough to fix the input."""

from __future__ import annotations

from collections.abc import Iterable


class SpatialMllmError(Exception):
    """Base of every error this package raises on purpose."""


class ImageDecodeError(SpatialMllmError, ValueError):
    """A camera message could not be turned into pixels; `reason` is a stable machine-readable code."""

    reason = "decode_failed"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason}: {message}")
        self.detail = message


class UnknownEncodingError(ImageDecodeError):
    """The `encoding` (or CompressedImage `format`) is not one this package converts."""

    reason = "unknown_encoding"


class BadShapeError(ImageDecodeError):
    """Width or height is zero, negative or impossible for the encoding (odd width for YUV 4:2:2)."""

    reason = "bad_shape"


class ImageTooLargeError(ImageDecodeError):
    """width*height exceeds the configured pixel limit: refuse before allocating."""

    reason = "too_large"


class StepTooSmallError(ImageDecodeError):
    """`step` (bytes per row) is smaller than width * bytes per pixel."""

    reason = "step_too_small"


class DataTooShortError(ImageDecodeError):
    """`data` holds fewer than step * height bytes."""

    reason = "data_too_short"


class CorruptImageError(ImageDecodeError):
    """Compressed payload (JPEG/PNG/compressedDepth) is truncated or not what its header says."""

    reason = "corrupt_data"


class ImageEncodeError(SpatialMllmError, ValueError):
    """An array cannot be published with the requested encoding (wrong dtype, channels or encoding)."""


class InvalidFrameError(SpatialMllmError, ValueError):
    """A Frame was built from pixels that are not RGB uint8 HxWx3 (or a depth map of another size)."""


class ConfigError(SpatialMllmError, ValueError):
    """A configuration value is unknown, missing or of the wrong type; names the dotted key."""

    def __init__(
        self,
        key: str,
        problem: str,
        *,
        expected: str | None = None,
        allowed: Iterable[object] | None = None,
    ) -> None:
        self.key = key
        self.problem = problem
        self.expected = expected
        self.allowed = tuple(allowed) if allowed is not None else None
        message = f"{key or '<config>'}: {problem}"
        if expected:
            message += f" (expected {expected})"
        if self.allowed:
            message += "; allowed: " + ", ".join(str(a) for a in self.allowed)
        super().__init__(message)


class TransformError(SpatialMllmError, LookupError):
    """A transform that cannot be looked up; `reason` is the short phrase run summaries count."""

    reason = "transform unavailable"


class UnknownFrameError(TransformError):
    """A frame no transform names; the message lists the frames the buffer has."""

    reason = "unknown frame"


class DisconnectedFramesError(TransformError):
    """Two known frames in different trees: no chain of transforms joins them."""

    reason = "frames not connected"


class ExtrapolationError(TransformError):
    """A stamp before the first or after the last transform of an edge (tf2 does not extrapolate)."""

    reason = "outside the buffer"


class StaleTransformError(TransformError):
    """A stamp between two transforms of an edge that are further apart than the buffer's max_gap_s."""

    reason = "stale transform"


class InvalidTransformError(TransformError):
    """A transform that cannot enter the buffer: non-finite, zero quaternion, or a frame changing parent."""

    reason = "invalid transform"
