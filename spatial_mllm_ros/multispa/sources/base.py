"""The scene structures every source yields: posed views over static geometry and videos with tracks."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from spatial_mllm_ros.multispa.errors import CorruptFileError, EmptySceneError, MissingFileError
from spatial_mllm_ros.multispa.geometry import project, visible_mask

GRIPPER = "gripper"  # the entity name of the robot's gripper (the robot tasks ask about it apart)


@dataclass
class View:
    """One posed colour image: intrinsics, aligned camera-to-world pose, pixels and optional depth.

    Pixels come from a file path, JPEG bytes or an array; depth from a PNG (depth_scale units per metre)
    or an array in metres. Both load lazily so listing a scene never decodes an image.
    """

    frame_id: str
    intrinsics: np.ndarray
    c2w: np.ndarray
    width: int
    height: int
    image: Path | bytes | np.ndarray
    depth_source: Path | np.ndarray | None = None
    depth_scale: float = 1000.0
    stamp_s: float = 0.0
    scene_id: str = ""

    def rgb(self) -> np.ndarray:
        """RGB uint8 HxWx3 pixels; a missing or undecodable image raises a typed scene error."""
        if isinstance(self.image, np.ndarray):
            return self.image
        if isinstance(self.image, Path):
            if not self.image.is_file():
                raise MissingFileError(self.scene_id, str(self.image))
            bgr = cv2.imread(str(self.image), cv2.IMREAD_COLOR)
        else:
            bgr = cv2.imdecode(np.frombuffer(self.image, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CorruptFileError(self.scene_id, f"cannot decode image of frame {self.frame_id}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def depth(self) -> np.ndarray:
        """Depth in metres (float32, 0 = no reading) at the depth map's own resolution."""
        if self.depth_source is None:
            raise MissingFileError(self.scene_id, f"frame {self.frame_id} has no depth")
        if isinstance(self.depth_source, np.ndarray):
            return self.depth_source
        raw = cv2.imread(str(self.depth_source), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2:
            raise CorruptFileError(self.scene_id, f"cannot decode depth {self.depth_source}")
        return raw.astype(np.float32) / np.float32(self.depth_scale)


@dataclass
class Video:
    """A clip: frames (posed views) with point tracks in world coordinates and named moving things.

    tracks_world (T, N, 3) metres, visible (T, N); entities maps a semantic name ("the gripper",
    "the red cube") to its world position per frame (T, 3) (simulation only).
    """

    views: list[View]
    tracks_world: np.ndarray
    visible: np.ndarray
    entities: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Scene:
    """Everything the tasks need from one scene: posed views over static geometry and/or a video."""

    scene_id: str
    source: str
    views: list[View] = field(default_factory=list)
    points: np.ndarray | None = None  # (N, 3) static world vertices (mesh)
    instance_ids: np.ndarray | None = None  # (N,) 0 = no instance
    instance_labels: dict[int, str] = field(default_factory=dict)
    video: Video | None = None
    subset: str = ""  # TAPVid-3D subset ("adt", "pstudio"); the sim's "sim"
    dropped: dict[str, int] = field(default_factory=dict)  # frames dropped at load, by reason
    info: dict[str, Any] = field(default_factory=dict)  # source facts worth auditing (the sim's script)
    audit: dict[str, Any] = field(default_factory=dict)  # copied into every sample's meta (a bag's topics)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count n frames dropped at load for `reason` (reported in the run summary)."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    @property
    def has_geometry(self) -> bool:
        """Whether views and static vertices exist (depth, correspondence, camera, size tasks)."""
        return bool(self.views) and self.points is not None and len(self.points) > 0

    @property
    def has_depth_maps(self) -> bool:
        """Whether some view carries a depth map (depth tasks without vertices read it per pixel)."""
        return any(v.depth_source is not None for v in self.views)


class SceneSource(Protocol):
    """A data source: lists scene ids under a root and loads one scene at a time."""

    name: str

    def list_scenes(self) -> list[str]:
        """Scene ids in a stable order."""
        ...

    def load(self, scene_id: str) -> Scene:
        """Load one scene; raises a SceneError subclass when it cannot be used."""
        ...


def scalar_items(labels: dict[str, Any]) -> dict[str, Any]:
    """Keep the plain (str, number, bool) entries of episode labels: what samples record as its script."""
    return {k: v for k, v in labels.items() if isinstance(v, str | int | float | bool)}


def image_size(path: Path, scene_id: str = "") -> tuple[int, int]:
    """(width, height) from the image header only (decoding a JPEG to learn its size is the slow path)."""
    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except FileNotFoundError as exc:
        raise MissingFileError(scene_id, str(path)) from exc
    except Exception as exc:  # PIL raises several types for a broken header
        raise CorruptFileError(scene_id, f"{path}: {exc}") from exc


def jpeg_size(data: bytes, scene_id: str = "") -> tuple[int, int]:
    """(width, height) of in-memory JPEG bytes from the header."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception as exc:  # PIL raises several types for a broken header
        raise CorruptFileError(scene_id, f"bad JPEG bytes: {exc}") from exc


def require_root(root: Path) -> None:
    """Fail with a MissingFileError naming the data root when it is not a directory."""
    if not root.is_dir():
        raise MissingFileError(str(root), "data root does not exist")


def visibility_matrix(
    scene: Scene, tolerance_m: float | None = None, full_inverse: bool = False
) -> tuple[np.ndarray, list[int]]:
    """(F, N) visibility of the scene's vertices per view; views whose depth fails are dropped.

    Returns the matrix over the kept views and their indices into scene.views; full_inverse inverts the
    poses with np.linalg.inv (geometry.invert_pose).
    """
    if scene.points is None:
        raise EmptySceneError(scene.scene_id, "no vertices to test for visibility")
    rows: list[np.ndarray] = []
    kept: list[int] = []
    for i, view in enumerate(scene.views):
        try:
            depth = view.depth()
        except (CorruptFileError, MissingFileError) as exc:
            scene.drop(exc.reason)
            continue
        proj = project(scene.points, view.c2w, view.intrinsics, full_inverse)
        rows.append(visible_mask(proj, (view.width, view.height), depth, tolerance_m))
        kept.append(i)
    if not rows:
        return np.zeros((0, len(scene.points)), dtype=bool), []
    return np.stack(rows), kept

