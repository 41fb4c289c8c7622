"""ScanNet in its processed (exported) layout: posed colour frames, depth in mm, mesh vertices.

Layout, one folder per scan under the root:

    <root>/<scene_id>/color/<frame>.jpg      colour frames (1296x968 in ScanNet)
    <root>/<scene_id>/depth/<frame>.png      uint16 depth in millimetres (640x480)
    <root>/<scene_id>/pose/<frame>.txt       4x4 camera-to-world (inf/NaN where tracking was lost)
    <root>/<scene_id>/intrinsic_color.txt    4x4 (or 3x3) colour intrinsics (or intrinsic/intrinsic_color.txt,
                                             where ScanNet's SensReader writes it)
    <root>/<scene_id>/<scene_id>.txt         ScanNet meta with "axisAlignment = 16 numbers" (or
                                             axis_align.txt with a 4x4 matrix; identity when absent)
    <root>/<scene_id>/mesh_vertices.npy      (N, 3+) mesh vertices (xyz first, scan coordinates as in
                                             the .ply; aligned on load like the poses)
    <root>/<scene_id>/instance_ids.npy       (N,) instance id per vertex, 0 = none
    <root>/<scene_id>/instance_labels.json   {"<instance id>": "<category>", ...}

Instead of the three mesh files, ScanNet's own <scene>_vh_clean_2.ply, ..._vh_clean_2.0.010000.segs.json
and <scene>.aggregation.json may sit in the scan folder (see scannet_raw.py).

Meta's layout (posed_images/<scene>/NNNNN.{jpg,png,txt} next to ScanNet's scans/) is read too, detected
from the root (see scannet_layout.py).

Frames whose number is a multiple of FRAME_STEP are used (every 5th frame, as in the paper); that
works for full exports and for exports that already kept only every 5th frame under their original
numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_mllm_ros.multispa.errors import (
    CorruptFileError,
    EmptySceneError,
    InvalidPoseError,
    MissingFileError,
)
from spatial_mllm_ros.multispa.geometry import align_poses, pose_is_valid, transform_points
from spatial_mllm_ros.multispa.sources.base import Scene, View, image_size, require_root
from spatial_mllm_ros.multispa.sources.scannet_layout import detect_layout, no_scenes_error
from spatial_mllm_ros.multispa.sources.scannet_raw import raw_mesh_files, read_raw_mesh

FRAME_STEP = 5


def read_matrix(path: Path, scene_id: str) -> np.ndarray:
    """Read a whitespace-separated 4x4 (or 3x3, padded) matrix from a text file."""
    if not path.is_file():
        raise MissingFileError(scene_id, str(path))
    try:
        m = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise CorruptFileError(scene_id, f"{path.name}: {exc}") from exc
    if m.shape == (3, 3):
        full = np.eye(4)
        full[:3, :3] = m
        m = full
    if m.shape != (4, 4):
        raise CorruptFileError(scene_id, f"{path.name}: expected a 4x4 matrix, got shape {m.shape}")
    return m


def read_axis_alignment(folder: Path, scene_id: str) -> np.ndarray:
    """ScanNet's axis-alignment matrix from <scene>.txt (axisAlignment = ...) or axis_align.txt."""
    meta = folder / f"{scene_id}.txt"
    if meta.is_file():
        for line in meta.read_text(errors="replace").splitlines():
            if line.strip().startswith("axisAlignment"):
                try:
                    values = [float(x) for x in line.split("=", 1)[1].split()]
                except ValueError as exc:
                    raise CorruptFileError(scene_id, f"{meta.name}: {exc}") from exc
                if len(values) != 16:
                    raise CorruptFileError(scene_id, f"{meta.name}: axisAlignment needs 16 numbers")
                return np.array(values).reshape(4, 4)
    if (folder / "axis_align.txt").is_file():
        return read_matrix(folder / "axis_align.txt", scene_id)
    return np.eye(4)


@dataclass
class ScanNetSource:
    """Scenes of a ScanNet export under root, in the export layout or Meta's (see scannet_layout.py)."""

    root: Path
    frame_step: int = FRAME_STEP
    name: str = "scannet"

    def list_scenes(self) -> list[str]:
        """Scan ids of the root's layout, sorted; a root with none raises NoScenesError naming the layouts."""
        require_root(self.root)
        scenes = detect_layout(self.root).list_scenes(self.root)
        if not scenes:
            raise no_scenes_error(self.root)
        return scenes

    def load(self, scene_id: str) -> Scene:
        """Load poses, intrinsics, alignment and vertices; frames with bad poses or no depth are dropped."""
        files = detect_layout(self.root).files(self.root, scene_id)
        if not files.color.is_dir():
            raise MissingFileError(scene_id, f"no colour-frame folder {files.color}")
        if not files.annotations.is_dir():
            raise MissingFileError(scene_id, f"no scan folder {files.annotations} (axis alignment and mesh)")
        k = read_matrix(files.intrinsics_file(), scene_id)[:3, :3]
        align = read_axis_alignment(files.annotations, scene_id)
        points, inst, labels = self._mesh(files.annotations, scene_id)
        frames = sorted(
            (p for p in files.color.glob("*.jpg")
             if p.stem.isdigit() and int(p.stem) % self.frame_step == 0),
            key=lambda p: int(p.stem),
        )
        if not frames:
            raise EmptySceneError(scene_id, "no colour frames")
        size = Counter(self._size(jpg, scene_id) for jpg in frames[:3]).most_common(1)[0][0]
        if size is None:
            raise CorruptFileError(scene_id, "colour frames have no readable JPEG header")
        points = transform_points(align, points)  # into the aligned z-up world of the poses
        scene = Scene(scene_id, self.name, points=points, instance_ids=inst, instance_labels=labels)
        n_bad_pose = 0
        for jpg in frames:
            depth = files.depth / f"{jpg.stem}.png"
            pose_path = files.pose / f"{jpg.stem}.txt"
            if not depth.is_file() or not pose_path.is_file():
                scene.drop(MissingFileError.reason)
                continue
            try:
                pose = read_matrix(pose_path, scene_id)
            except CorruptFileError:
                pose = np.full((4, 4), np.nan)
            if not pose_is_valid(pose):
                n_bad_pose += 1
                continue
            if self._size(jpg, scene_id) != size:  # a header check: cheap, unlike decoding
                scene.drop(CorruptFileError.reason)
                continue
            scene.views.append(
                View(jpg.stem, k, align_poses(align, pose), size[0], size[1], jpg, depth, 1000.0,
                     stamp_s=int(jpg.stem) / 30.0, scene_id=scene_id)
            )
        if n_bad_pose:
            scene.dropped["invalid pose"] = n_bad_pose
        if not scene.views:
            if n_bad_pose:
                raise InvalidPoseError(scene_id, f"all {n_bad_pose} poses are non-finite or singular")
            raise EmptySceneError(scene_id, "no frame has both a pose and a depth map")
        return scene

    @staticmethod
    def _size(jpg: Path, scene_id: str) -> tuple[int, int] | None:
        try:
            return image_size(jpg, scene_id)
        except CorruptFileError:
            return None

    def _mesh(self, folder: Path, scene_id: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        exported = ("mesh_vertices.npy", "instance_ids.npy", "instance_labels.json")
        if not all((folder / name).is_file() for name in exported):
            if raw_mesh_files(folder, scene_id) is None:
                missing = next(n for n in exported if not (folder / n).is_file())
                raise MissingFileError(scene_id,
                                       f"{folder / missing} (or ScanNet's ply + segs + aggregation files)")
            points, inst, labels = read_raw_mesh(folder, scene_id)
            return self._finite(points, inst, labels, scene_id)
        try:
            verts = np.load(folder / "mesh_vertices.npy", allow_pickle=False)
            inst = np.load(folder / "instance_ids.npy", allow_pickle=False)
            names = json.loads((folder / "instance_labels.json").read_text())
            labels = {int(k): str(v) for k, v in names.items()}
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            raise CorruptFileError(scene_id, f"mesh: {exc}") from exc
        if verts.ndim != 2 or verts.shape[1] < 3 or inst.shape != (verts.shape[0],):
            raise CorruptFileError(scene_id, f"mesh shapes {verts.shape} / {inst.shape} do not match")
        return self._finite(verts[:, :3].astype(np.float64), inst, labels, scene_id)

    @staticmethod
    def _finite(points: np.ndarray, inst: np.ndarray, labels: dict[int, str],
                scene_id: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        finite = np.isfinite(points).all(axis=1)
        if not finite.any():
            raise EmptySceneError(scene_id, "mesh has no finite vertices")
        return points[finite], inst[finite].astype(np.int64), labels
