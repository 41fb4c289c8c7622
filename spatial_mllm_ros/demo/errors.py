"""Typed errors of the end-to-end demo: each names the stage and the thing that failed."""

from __future__ import annotations

from spatial_mllm_ros.errors import SpatialMllmError


class DemoError(SpatialMllmError):
    """Base of the demo's errors."""


class ModelMissingError(DemoError):
    """The checkpoint the demo should run (by default the shipped SpatialMLLM-tiny) is not there."""


class NoDemoSceneError(DemoError):
    """No scene seed in the searched range holds the object the demo pushes with a feasible push."""


class LiveStageError(DemoError):
    """The live stage stalled: a node did not start, a move never finished, or answers did not come."""
