"""Typed errors of the MultiSPA data engine; a scene-level error becomes a skip reason in the summary."""

from __future__ import annotations


class MultispaError(Exception):
    """Base class of data-engine errors."""


class GeometryError(MultispaError, ValueError):
    """A geometric query with arguments that make no sense (unknown dimension, bad shapes)."""


class UnknownTaskError(MultispaError, KeyError):
    """A task, family or source name that is not in the registry."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        self.name = name
        hint = f"; known: {', '.join(known)}" if known else ""
        super().__init__(f"unknown task or family {name!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSourceError(MultispaError, KeyError):
    """A data source name that is not scannet, tapvid3d or sim."""

    def __str__(self) -> str:
        return str(self.args[0])


class SceneError(MultispaError):
    """A scene or clip that cannot be used; `reason` is the short key counted in the run summary."""

    reason = "unusable scene"

    def __init__(self, scene_id: str, detail: str = "") -> None:
        self.scene_id = scene_id
        self.detail = detail
        super().__init__(f"{scene_id}: {self.reason}{': ' + detail if detail else ''}")


class MissingFileError(SceneError):
    """A file the layout requires is not there."""

    reason = "missing file"


class CorruptFileError(SceneError):
    """A file that exists but cannot be decoded or has the wrong shape."""

    reason = "corrupt file"


class InvalidPoseError(SceneError):
    """Poses that are all non-finite or singular (no usable frame left)."""

    reason = "invalid poses"


class EmptySceneError(SceneError):
    """A scene with no usable frames, vertices or tracks."""

    reason = "empty scene"


class MissingExtrinsicsError(SceneError):
    """A TAPVid-3D clip without extrinsics_w2c: world motion cannot be separated from camera motion."""

    reason = "no extrinsics"


class SimulationError(SceneError):
    """The simulator failed to build or render a scene."""

    reason = "simulation failed"


class NoApplicableTaskError(SceneError):
    """None of the requested tasks can use this scene (e.g. a TAPVid-3D clip outside adt/pstudio)."""

    reason = "no applicable task"


class NoSamplesError(SceneError):
    """Every task ran but none could draw a sample (too few visible points, pairs or motions)."""

    reason = "no samples"


class ManifestError(MultispaError):
    """An output directory whose manifest does not match the run (other source, seed or shards)."""


class NoScenesError(MultispaError):
    """A data root in which no scene of any accepted layout was found."""


class EmptyRunError(MultispaError):
    """A generation run that wrote no sample; the message says why (no scenes, all skipped, ...)."""


class RecordingError(SceneError):
    """A robot recording (rosbag2) that cannot be read as a scene: unreadable, or a topic or frame gone."""

    reason = "unreadable recording"
