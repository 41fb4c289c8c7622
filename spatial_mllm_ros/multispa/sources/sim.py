"""Simulated scenes (MuJoCo tabletop), shaped like the ScanNet and TAPVid-3D sources.

Every task family runs offline from them: posed RGB-D views of the static scene from moving cameras,
"mesh vertices" with instance ids, and a manipulation clip with point tracks and the named gripper and
object positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.multispa.errors import MissingFileError, SimulationError
from spatial_mllm_ros.multispa.geometry import back_project
from spatial_mllm_ros.multispa.sources.base import GRIPPER, Scene, Video, View, scalar_items

STATIC_CAMERAS: tuple[str, ...] = ("front", "side")
MOTION_KINDS: tuple[str, ...] = ("translate", "push", "pick_place", "failed_grasp", "idle")
MAX_DEPTH_M = 3.0  # farther readings are sky / clipping plane: no depth
POINT_STRIDE = 4  # back-projected pixel grid step of the static views
VOXEL_M = 0.005  # back-projected points are thinned to one per voxel
OBJECT_POINTS = 400  # surface samples per object (exact sizes for the object-size tasks)


@dataclass
class SimSource:
    """n_scenes simulated scenes with seeds first_seed, first_seed + 1, ... (ids "sim-<seed>")."""

    n_scenes: int = 8
    first_seed: int = 0
    width: int = 320
    height: int = 240
    sweep_views: int = 24
    motion_frames: int = 12
    name: str = "sim"

    def list_scenes(self) -> list[str]:
        """Scene ids of the seed range."""
        return [f"sim-{s:06d}" for s in range(self.first_seed, self.first_seed + self.n_scenes)]

    def load(self, scene_id: str) -> Scene:
        """Simulate and render one scene; any simulator failure becomes a SimulationError."""
        try:
            seed = int(scene_id.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            raise MissingFileError(scene_id, "sim scene ids look like sim-000042") from None
        try:
            return self._simulate(scene_id, seed)
        except SimulationError:
            raise
        except Exception as exc:  # MuJoCo, GL and script errors all mean "this scene failed"
            raise SimulationError(scene_id, f"{type(exc).__name__}: {exc}") from exc

    def _simulate(self, scene_id: str, seed: int) -> Scene:
        from spatial_mllm_ros.sim import SceneConfig, SimWorld, random_motion, run_episode

        rng = np.random.default_rng(seed)
        config = SceneConfig(seed=seed, n_objects=int(rng.integers(2, 5)), width=self.width,
                             height=self.height, cameras=STATIC_CAMERAS, shadows=False)
        scene = Scene(scene_id, self.name, subset="sim")
        with SimWorld(config) as world:
            cam = STATIC_CAMERAS[0]
            k = world.intrinsics(cam)
            for t, pose in enumerate(camera_sweep(rng, self.sweep_views)):
                world.set_camera_pose(cam, pose)
                frame = world.render(cam, depth=True, seg=False)
                scene.views.append(_view(scene_id, f"v{t:02d}", k, world.extrinsics(cam), frame.rgb,
                                         frame.depth, float(t)))
            points = _static_points(scene.views)
            labels: dict[int, str] = {}
            obj_pts, obj_ids = [], []
            for obj in world.scene.objects:
                body = obj.surface_points(OBJECT_POINTS, np.random.default_rng(seed * 31 + obj.seg_id))
                obj_pts.append(world.object_pose(obj.name).apply(body))
                obj_ids.append(np.full(OBJECT_POINTS, obj.seg_id))
                labels[obj.seg_id] = obj.name
            scene.points = np.concatenate([points, *obj_pts])
            scene.instance_ids = np.concatenate([np.zeros(len(points), dtype=np.int64), *obj_ids])
            scene.instance_labels = labels
        with SimWorld(config) as world:
            motion = random_motion(world, rng, MOTION_KINDS)
            cam = str(getattr(motion, "camera", "") or rng.choice(STATIC_CAMERAS))  # the script's camera
            ep = run_episode(world, motion, self.motion_frames, cameras=(cam,), seg=False, n_track_points=24)
        track = ep.cameras[cam]
        views = [_view(scene_id, f"m_{cam}_{t:02d}", track.K, track.T_world_cam[t], track.rgb[t], None,
                       t / ep.fps) for t in range(ep.n_frames)]
        names = list(ep.tracks)
        tracks = np.concatenate([ep.tracks[n] for n in names], axis=1)
        visible = np.concatenate([ep.track_pixels(n, cam)[1] for n in names], axis=1)
        entities = {GRIPPER: ep.gripper_poses[:, :3].copy()}
        entities.update({n: ep.object_poses[n][:, :3].copy() for n in names})
        scene.video = Video(views, tracks, visible, entities)
        scene.info["script"] = scalar_items(ep.labels)
        return scene


def camera_sweep(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Camera poses scattered around the table: azimuth, distance and height vary independently.

    Radius and height changes as large as the sideways ones keep the forward/backward and up/down
    labels of image pairs balanced (cameras on one circle looking at one point always move "forward").
    """
    from spatial_mllm_ros.sim.geometry import look_at, make_pose

    base = rng.uniform(-np.pi, np.pi)
    poses = []
    for _ in range(n):
        azimuth = base + np.radians(rng.uniform(-15, 15))
        radius, height = rng.uniform(0.5, 1.2), rng.uniform(0.3, 0.9)
        eye = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), height])
        target = np.array([0.0, 0.0, 0.08]) + rng.uniform(-0.1, 0.1, 3)
        poses.append(make_pose(look_at(eye, target), eye))
    return poses


def _view(scene_id: str, frame_id: str, k: np.ndarray, c2w: np.ndarray, rgb: np.ndarray,
          depth: np.ndarray | None, stamp_s: float) -> View:
    d = None
    if depth is not None:
        d = np.where((depth > 0) & (depth < MAX_DEPTH_M), depth, 0.0).astype(np.float32)
    h, w = rgb.shape[:2]
    return View(frame_id, np.asarray(k, dtype=np.float64), np.asarray(c2w, dtype=np.float64), w, h,
                rgb.copy(), d, stamp_s=stamp_s, scene_id=scene_id)


def _static_points(views: list[View]) -> np.ndarray:
    """Back-projected depth of every static view, thinned to one point per voxel."""
    pts = []
    for view in views:
        depth = view.depth()
        v, u = np.mgrid[0:view.height:POINT_STRIDE, 0:view.width:POINT_STRIDE]
        z = depth[v, u]
        ok = z > 0
        pts.append(back_project(np.stack([u[ok], v[ok]], axis=1), z[ok], view.intrinsics, view.c2w))
    allp = np.concatenate(pts) if pts else np.zeros((0, 3))
    _, keep = np.unique(np.floor(allp / VOXEL_M).astype(np.int64), axis=0, return_index=True)
    return allp[np.sort(keep)]
