"""Typed errors of the simulation: each names the bad parameter, object, camera or missing library."""

from __future__ import annotations


class SimError(Exception):
    """Base class of every simulation error."""


class SceneConfigError(SimError, ValueError):
    """A scene parameter is out of range (negative size, too many objects, bad resolution...)."""


class UnknownObjectError(SimError, LookupError):
    """An object name is not in the scene, or is not '<colour> <shape>' from the known vocabulary."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown object"


class UnknownCameraError(SimError, LookupError):
    """A camera name is not one of the scene's cameras."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown camera"


class UnreachableTargetError(SimError, ValueError):
    """A gripper target lies outside the workspace the gripper can reach."""


class MotionError(SimError, ValueError):
    """A scripted motion is malformed (unknown direction, zero vector, bad spec string...)."""


class RenderBackendError(SimError, RuntimeError):
    """MuJoCo cannot create an off-screen OpenGL context (no EGL, no OSMesa)."""


class RecordError(SimError, OSError):
    """An episode cannot be written to a bag (existing output, unknown storage plugin...)."""
