"""Errors of the ROS adapters."""

from __future__ import annotations

from spatial_mllm_ros.errors import SpatialMllmError


class BringupError(SpatialMllmError):
    """The nodes cannot be started as asked (missing params file, no simulation node, bad log level)."""
