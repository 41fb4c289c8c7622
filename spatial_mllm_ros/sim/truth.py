"""Episodes and their ground truth: frames per camera, poses, point tracks and motion queries."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.conventions import DIRECTION_VECTORS, DIRECTIONS, STATIC_THRESHOLD_M, direction_of
from spatial_mllm_ros.sim.errors import MotionError, UnknownCameraError, UnknownObjectError
from spatial_mllm_ros.sim.geometry import make_pose, project, quat_to_mat, rotation_angle_deg, to_camera
from spatial_mllm_ros.sim.scene import Scene, SceneConfig, build_scene

OCCLUSION_TOLERANCE_M = 0.01  # a track point is visible when the depth image is no nearer than this
MIN_FACING_COS = 0.2  # ... and its surface faces the camera by more than a grazing angle


def direction_vector(direction: str) -> np.ndarray:
    """Return the unit optical-frame vector of a direction word; MotionError lists the words otherwise."""
    if direction not in DIRECTION_VECTORS:
        raise MotionError(f"unknown direction {direction!r}; expected one of {list(DIRECTIONS)}")
    return np.array(DIRECTION_VECTORS[direction])


@dataclass(frozen=True)
class MotionTruth:
    """How something moved between two frames, expressed in a camera's optical frame at the first frame."""

    direction: str | None  # dominant direction word, None when it did not move
    distance_mm: int
    vector_cam_mm: tuple[int, int, int]
    moved: bool  # travelled at least STATIC_THRESHOLD_M
    rotation_deg: float = 0.0  # angle of its own rotation between the frames

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for tuples)."""
        return {
            "direction": self.direction,
            "distance_mm": self.distance_mm,
            "vector_cam_mm": list(self.vector_cam_mm),
            "moved": self.moved,
            "rotation_deg": round(self.rotation_deg, 2),
        }


def motion_truth(t_world_a: np.ndarray, t_world_b: np.ndarray, t_world_cam: np.ndarray) -> MotionTruth:
    """Truth of a body moving from pose a to pose b (4x4 world poses) seen from the camera pose given."""
    v_world = t_world_b[:3, 3] - t_world_a[:3, 3]
    v_cam = t_world_cam[:3, :3].T @ v_world
    dist = float(np.linalg.norm(v_cam))
    moved = dist >= STATIC_THRESHOLD_M
    rot = rotation_angle_deg(t_world_a[:3, :3].T @ t_world_b[:3, :3])
    return MotionTruth(
        direction_of(v_cam) if moved else None,
        round(dist * 1000),
        tuple(round(float(c) * 1000) for c in v_cam),
        moved,
        rot,
    )


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with its truth: RGB, depth (m, optical z), segmentation ids, K, pose, stamp."""

    rgb: np.ndarray
    depth: np.ndarray | None
    seg: np.ndarray | None
    K: np.ndarray  # noqa: N815 (the conventional name of the intrinsic matrix)
    T_world_cam: np.ndarray  # noqa: N815
    stamp_ns: int


@dataclass
class CameraTrack:
    """All frames of one camera, stacked: rgb (T,H,W,3), depth (T,H,W), seg (T,H,W), poses (T,4,4)."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray | None
    seg: np.ndarray | None
    K: np.ndarray  # noqa: N815
    T_world_cam: np.ndarray  # noqa: N815


def _pose_matrix(pose7: np.ndarray) -> np.ndarray:
    return make_pose(quat_to_mat(pose7[3:]), pose7[:3])


@dataclass
class Episode:
    """A simulated episode: per-camera frames, gripper and object poses, point tracks, labels and truth."""

    scene: Scene
    labels: dict[str, Any]
    fps: float
    stamps_ns: np.ndarray  # (T,) int64, simulation time
    cameras: dict[str, CameraTrack]
    gripper_poses: np.ndarray  # (T, 7) [x, y, z, qw, qx, qy, qz] of the tool centre point
    gripper_opening: np.ndarray  # (T,) metres between the fingers
    object_poses: dict[str, np.ndarray]  # name -> (T, 7)
    tracks: dict[str, np.ndarray]  # name -> (T, K, 3) world points on the object's surface
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames (time steps) in the episode."""
        return int(len(self.stamps_ns))

    @property
    def seg_ids(self) -> dict[str, int]:
        """Segmentation id of the table, the gripper and each object (0 is background)."""
        return self.scene.seg_ids

    @property
    def object_names(self) -> tuple[str, ...]:
        """Names of the scene's objects ("red cube", ...)."""
        return self.scene.object_names

    def _camera(self, camera: str) -> CameraTrack:
        if camera not in self.cameras:
            raise UnknownCameraError(f"episode has no camera {camera!r}; it has: {', '.join(self.cameras)}")
        return self.cameras[camera]

    def _poses(self, entity: str) -> np.ndarray:
        if entity == "gripper":
            return self.gripper_poses
        if entity not in self.object_poses:
            raise UnknownObjectError(
                f"no object {entity!r} in the episode; it has: gripper, {', '.join(self.object_poses)}"
            )
        return self.object_poses[entity]

    def frame(self, camera: str, i: int) -> CameraFrame:
        """Frame `i` of `camera` with its truth (negative indices count from the end)."""
        c = self._camera(camera)
        return CameraFrame(
            c.rgb[i],
            None if c.depth is None else c.depth[i],
            None if c.seg is None else c.seg[i],
            c.K,
            c.T_world_cam[i],
            int(self.stamps_ns[i]),
        )

    def save(self, path: str | Path) -> Path:
        """Write the episode to one compressed .npz (arrays + JSON of config, labels, fps)."""
        arrays: dict[str, np.ndarray] = {
            "stamps_ns": self.stamps_ns,
            "gripper_poses": self.gripper_poses,
            "gripper_opening": self.gripper_opening,
        }
        for k, name in enumerate(self.object_poses):
            arrays[f"object{k}_poses"], arrays[f"object{k}_tracks"] = (
                self.object_poses[name],
                self.tracks[name],
            )
        for cam, c in self.cameras.items():
            arrays.update({f"{cam}_rgb": c.rgb, f"{cam}_K": c.K, f"{cam}_T_world_cam": c.T_world_cam})
            arrays.update(
                {f"{cam}_{key}": v for key, v in (("depth", c.depth), ("seg", c.seg)) if v is not None}
            )
        meta = {
            "config": dataclasses.asdict(self.scene.config),
            "labels": self.labels,
            "fps": self.fps,
            "cameras": list(self.cameras),
            "objects": list(self.object_poses),
            "meta": self.meta,
        }
        path = Path(path)
        np.savez_compressed(path, meta=np.array(json.dumps(meta, default=str)), **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> Episode:
        """Read an episode written by save() (the scene is rebuilt from its config)."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            cams = {
                cam: CameraTrack(
                    cam,
                    z[f"{cam}_rgb"],
                    z.get(f"{cam}_depth"),
                    z.get(f"{cam}_seg"),
                    z[f"{cam}_K"],
                    z[f"{cam}_T_world_cam"],
                )
                for cam in meta["cameras"]
            }
            names = meta["objects"]
            return cls(
                build_scene(SceneConfig(**meta["config"])),
                meta["labels"],
                meta["fps"],
                z["stamps_ns"],
                cams,
                z["gripper_poses"],
                z["gripper_opening"],
                {n: z[f"object{k}_poses"] for k, n in enumerate(names)},
                {n: z[f"object{k}_tracks"] for k, n in enumerate(names)},
                meta["meta"],
            )

    def pose(self, entity: str, i: int) -> np.ndarray:
        """4x4 world pose of "gripper" or an object at frame `i`."""
        return _pose_matrix(self._poses(entity)[i])

    def position_cam(self, entity: str, i: int, camera: str) -> np.ndarray:
        """Position (m) of "gripper" or an object at frame `i` in `camera`'s optical frame at frame `i`."""
        return to_camera(self._poses(entity)[i, :3], self._camera(camera).T_world_cam[i])

    def project(self, points_world: np.ndarray, i: int, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) and optical depth z (N,) of world points in `camera` at frame `i`."""
        c = self._camera(camera)
        p = to_camera(np.atleast_2d(points_world), c.T_world_cam[i])
        return project(p, c.K), p[:, 2]

    def gripper_motion(self, i: int, j: int, camera: str) -> MotionTruth:
        """How the gripper moved from frame i to j, in `camera`'s optical frame at frame i."""
        return self._motion("gripper", i, j, camera)

    def object_motion(self, name: str, i: int, j: int, camera: str) -> MotionTruth:
        """How object `name` moved from frame i to j, in `camera`'s optical frame at frame i."""
        return self._motion(name, i, j, camera)

    def camera_motion(self, i: int, j: int, camera: str | None = None) -> MotionTruth:
        """How `camera` itself moved from frame i to j (translation in its own frame at i, rotation angle).

        Defaults to the camera the script moved (labels["camera"]), else the first camera.
        """
        name = camera or self.labels.get("camera") or next(iter(self.cameras))
        poses = self._camera(name).T_world_cam
        return motion_truth(poses[i], poses[j], poses[i])

    def _motion(self, entity: str, i: int, j: int, camera: str) -> MotionTruth:
        poses = self._poses(entity)
        return motion_truth(
            _pose_matrix(poses[i]), _pose_matrix(poses[j]), self._camera(camera).T_world_cam[i]
        )

    def track_pixels(self, name: str, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (T, K, 2) of object `name`'s surface points in `camera` and their visibility (T, K).

        Visible means facing the camera, inside the image and not occluded (checked against depth).
        """
        if name not in self.tracks:
            raise UnknownObjectError(f"no tracks for {name!r}; objects: {', '.join(self.tracks)}")
        c = self._camera(camera)
        spec = self.scene.object(name)
        pts = self.tracks[name]
        uv = np.zeros((*pts.shape[:2], 2))
        visible = np.zeros(pts.shape[:2], bool)
        h, w = c.rgb.shape[1:3]
        for t in range(len(pts)):
            body = self.pose(name, t)
            normals = spec.surface_normals((pts[t] - body[:3, 3]) @ body[:3, :3]) @ body[:3, :3].T
            view = c.T_world_cam[t][:3, 3] - pts[t]
            cos = np.einsum("ij,ij->i", normals, view) / np.linalg.norm(view, axis=1)
            facing = cos > MIN_FACING_COS
            p = to_camera(pts[t], c.T_world_cam[t])
            front = facing & (p[:, 2] > 1e-6)
            uv[t] = project(np.where(front[:, None], p, 1.0), c.K)
            px = np.round(uv[t]).astype(int)
            inside = front & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            if c.depth is not None:
                d = c.depth[t][np.clip(px[:, 1], 0, h - 1), np.clip(px[:, 0], 0, w - 1)]
                inside &= d >= p[:, 2] - OCCLUSION_TOLERANCE_M
            visible[t] = inside
        return uv, visible

    def truth_summary(self, i: int = 0, j: int = -1) -> dict[str, Any]:
        """JSON-able truth between frames i and j for every camera: gripper, objects, camera motion."""
        out: dict[str, Any] = {
            "frames": [i % self.n_frames, j % self.n_frames],
            "gripper": {},
            "objects": {},
            "cameras": {},
        }
        for cam in self.cameras:
            out["gripper"][cam] = self.gripper_motion(i, j, cam).to_json()
            out["cameras"][cam] = self.camera_motion(i, j, cam).to_json()
            for name in self.object_poses:
                out["objects"].setdefault(name, {})[cam] = self.object_motion(name, i, j, cam).to_json()
        return out
