"""TAPVid-3D clips (ADT, Panoptic Studio): 3D point tracks in the camera frame plus per-frame poses.

Layout: `<root>/<subset>/<clip>.npz` (subset "adt" or "pstudio"; other folders are listed too and
named by their folder) with the arrays

    tracks_XYZ (T, N, 3)  metres, camera frame of frame t
    visibility (T, N)     bool
    fx_fy_cx_cy (4,)      intrinsics of the frames
    extrinsics_w2c (T, 4, 4)  world-to-camera per frame (required: without it a clip is skipped)

and the frames either as JPEG files in a sibling folder `<root>/<subset>/<clip>/<t:05d>.jpg` or as
`images_jpeg_bytes` inside the npz. The official files store those bytes as a pickled object array,
which is only read when the source is built with allow_pickle=True (pickles can run code).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_mllm_ros.multispa.errors import (
    CorruptFileError,
    EmptySceneError,
    InvalidPoseError,
    MissingExtrinsicsError,
    MissingFileError,
)
from spatial_mllm_ros.multispa.geometry import invert_pose, pose_is_valid, track_world_points
from spatial_mllm_ros.multispa.sources.base import Scene, Video, View, image_size, jpeg_size, require_root

REQUIRED_KEYS: tuple[str, ...] = ("tracks_XYZ", "visibility", "fx_fy_cx_cy")


@dataclass
class TapVid3DSource:
    """Clips of a TAPVid-3D download under root (see the module docstring for the layout)."""

    root: Path
    allow_pickle: bool = False
    name: str = "tapvid3d"

    def list_scenes(self) -> list[str]:
        """Clip ids "<subset>/<clip>" of every npz under root, sorted."""
        require_root(self.root)
        return sorted(p.relative_to(self.root).with_suffix("").as_posix() for p in self.root.rglob("*.npz"))

    def load(self, scene_id: str) -> Scene:
        """Load one clip into a Scene whose video holds world-frame tracks and posed frames."""
        path = self.root / f"{scene_id}.npz"
        if not path.is_file():
            raise MissingFileError(scene_id, str(path))
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                missing = [k for k in REQUIRED_KEYS if k not in keys]
                if missing:
                    raise MissingFileError(scene_id, f"npz lacks {', '.join(missing)}")
                if "extrinsics_w2c" not in keys:
                    raise MissingExtrinsicsError(scene_id)
                tracks = np.asarray(data["tracks_XYZ"], dtype=np.float64)
                visible = np.asarray(data["visibility"]).astype(bool)
                intr = np.asarray(data["fx_fy_cx_cy"], dtype=np.float64).reshape(-1)
                w2c = np.asarray(data["extrinsics_w2c"], dtype=np.float64)
                frames = self._frames(path, data, scene_id, tracks.shape[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(scene_id, f"{path.name}: {exc}") from exc
        n_frames = tracks.shape[0]
        if tracks.ndim != 3 or tracks.shape[2] != 3 or visible.shape != tracks.shape[:2]:
            raise CorruptFileError(scene_id, f"tracks {tracks.shape} / visibility {visible.shape} mismatch")
        if intr.size != 4 or w2c.shape != (n_frames, 4, 4):
            raise CorruptFileError(scene_id, f"intrinsics {intr.shape} / extrinsics {w2c.shape} mismatch")
        if n_frames < 2 or tracks.shape[1] == 0:
            raise EmptySceneError(scene_id, f"{n_frames} frames, {tracks.shape[1]} tracks")
        good = np.array([pose_is_valid(e) for e in w2c])
        if not good.any():
            raise InvalidPoseError(scene_id, "no finite extrinsics")
        w2c = np.where(good[:, None, None], w2c, np.eye(4))
        visible = visible & good[:, None] & np.isfinite(tracks).all(axis=2)
        world = track_world_points(np.nan_to_num(tracks), w2c)
        k = np.array([[intr[0], 0.0, intr[2]], [0.0, intr[1], intr[3]], [0.0, 0.0, 1.0]])
        width, height = (jpeg_size(frames[0], scene_id) if isinstance(frames[0], bytes)
                         else image_size(frames[0], scene_id))
        views = [
            View(f"{t:05d}", k, invert_pose(w2c[t]), width, height, frames[t], stamp_s=t / 30.0,
                 scene_id=scene_id)
            for t in range(n_frames)
        ]
        subset = scene_id.split("/")[0] if "/" in scene_id else ""
        scene = Scene(scene_id, self.name, video=Video(views, world, visible), subset=subset)
        if not good.all():
            scene.dropped["invalid pose"] = int((~good).sum())
        return scene

    def _frames(
        self, path: Path, data: np.lib.npyio.NpzFile, scene_id: str, n_frames: int
    ) -> list[Path] | list[bytes]:
        folder = path.with_suffix("")
        if folder.is_dir():
            files = [folder / f"{t:05d}.jpg" for t in range(n_frames)]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise MissingFileError(scene_id, f"frames {', '.join(missing[:3])}")
            return files
        if "images_jpeg_bytes" not in data.files:
            raise MissingFileError(scene_id, "no frame folder and no images_jpeg_bytes")
        try:
            raw = data["images_jpeg_bytes"]
        except ValueError:
            if not self.allow_pickle:
                raise CorruptFileError(
                    scene_id, "images_jpeg_bytes is a pickled object array (allow_pickle=True reads it)"
                ) from None
            with np.load(path, allow_pickle=True) as unsafe:
                raw = unsafe["images_jpeg_bytes"]
        frames = [bytes(x) for x in raw]
        if len(frames) != n_frames:
            raise CorruptFileError(scene_id, f"{len(frames)} frames for {n_frames} track steps")
        return frames
