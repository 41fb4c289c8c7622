"""Tabletop episodes drawn without MuJoCo: the shift suite's non-MuJoCo set.

The scenes are the simulator's layouts (sim.scene.build_scene: its objects, sizes, colours and camera
rigs) drawn by a small OpenCV painter with a look of its own: flat-shaded polygons sorted far to near on
a gradient backdrop, edges smoothed by supersampling. The camera, the gripper and the objects move by
exact vectors and the truth is written from those vectors, so every question drawn from it (the recipe's
wording, multispa.train.questions) has an exact answer, whatever the pictures look like.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spatial_mllm_ros.conventions import DIRECTIONS
from spatial_mllm_ros.multispa.train.simdata import (
    FIXED_CAMERAS,
    EpisodeSpec,
    camera_slide,
    episode_dir,
    write_truth,
)
from spatial_mllm_ros.sim.errors import UnreachableTargetError
from spatial_mllm_ros.sim.geometry import intrinsics, make_pose, project, rot_z, smoothstep, to_camera
from spatial_mllm_ros.sim.scene import (
    FINGER_HALF,
    GRIPPER_MAX_OPENING,
    PLACEMENT_HALF,
    TABLE_HALF,
    ObjectSpec,
    Scene,
    SceneConfig,
    build_scene,
    check_reachable,
)
from spatial_mllm_ros.sim.truth import direction_vector

SUPERSAMPLE = 3  # drawn at 3x and shrunk: smooth edges without an anti-aliased polygon fill
NEAR_M = 0.03  # polygons with a vertex nearer than this to the camera are not drawn
LOOK_STREAM = 0x7A57  # the look's random stream, apart from the layout's
MOTIONS = ("camera_translate", "translate", "push")
_CYLINDER_SIDES = 20
_BOX_FACES = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))

Polygon = tuple[np.ndarray, np.ndarray, np.ndarray]  # world vertices (k, 3), outward normal, rgb 0..1
Range = tuple[float, float]


def _box(centre: np.ndarray, half: tuple[float, float, float], yaw: float, rgb: np.ndarray) -> list[Polygon]:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * half
    r = rot_z(yaw)
    world = corners @ r.T + centre
    normals = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]]) @ r.T
    return [(world[list(f)], n, rgb) for f, n in zip(_BOX_FACES, normals)]


def _cylinder(centre: np.ndarray, radius: float, half_height: float, rgb: np.ndarray) -> list[Polygon]:
    a = np.linspace(0, 2 * np.pi, _CYLINDER_SIDES, endpoint=False)
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros_like(a)], axis=1)
    lo, hi = ring + centre - [0, 0, half_height], ring + centre + [0, 0, half_height]
    sides = [
        (np.array([lo[i], lo[j], hi[j], hi[i]]), np.array([np.cos(m), np.sin(m), 0.0]), rgb)
        for i, j, m in ((i, (i + 1) % len(a), a[i] + np.pi / len(a)) for i in range(len(a)))
    ]
    return [*sides, (hi, np.array([0.0, 0.0, 1.0]), rgb), (lo[::-1], np.array([0.0, 0.0, -1.0]), rgb)]


def _object(obj: ObjectSpec, centre: np.ndarray) -> list[Polygon]:
    rgb = np.array(obj.rgb)
    if obj.shape == "cube":
        return _box(centre, (obj.size_m,) * 3, obj.yaw_rad, rgb)
    if obj.shape == "cylinder":
        return _cylinder(centre, obj.size_m, obj.half_height_m, rgb)
    # a sphere: a 12-sided ball of latitude bands (flat shading shows it is round)
    polys: list[Polygon] = []
    lat = np.linspace(-np.pi / 2, np.pi / 2, 7)
    lon = np.linspace(0, 2 * np.pi, 13)
    for a0, a1 in zip(lat, lat[1:]):
        for b0, b1 in zip(lon, lon[1:]):
            quad = np.array([[np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)]
                             for a, b in ((a0, b0), (a0, b1), (a1, b1), (a1, b0))])
            normal = quad.mean(0) / np.linalg.norm(quad.mean(0))
            polys.append((centre + obj.size_m * quad, normal, rgb))
    return polys


def _gripper(tcp: np.ndarray) -> list[Polygon]:
    """Open fingers either side of the tool centre point, a palm block above them and the arm."""
    fx, fy, fz = FINGER_HALF
    dark, light = np.array([0.22, 0.22, 0.25]), np.array([0.6, 0.62, 0.66])
    polys = _box(tcp + [0, 0, 0.08], (GRIPPER_MAX_OPENING / 2 + 2 * fx + 0.005, 0.022, 0.02), 0.0, light)
    polys += _cylinder(tcp + [0, 0, 0.3], 0.018, 0.2, light * 1.2)
    for sign in (-1.0, 1.0):
        polys += _box(tcp + [sign * (GRIPPER_MAX_OPENING / 2 + fx), 0, fz - 0.02], FINGER_HALF, 0.0, dark)
    return polys


def _hsv(hue: float, sat: Range, val: Range, rng: np.random.Generator) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*sat), rng.uniform(*val)))


class Painter:
    """Draws one scene's polygons from any camera pose, in a look drawn from the scene's seed."""

    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        cfg = scene.config
        self.size = (cfg.width, cfg.height)
        self.k = intrinsics(cfg.fovy_deg, cfg.width * SUPERSAMPLE, cfg.height * SUPERSAMPLE)
        hue = rng.uniform(0, 1)
        self.sky = [_hsv(hue, (0.1, 0.4), (0.7, 0.95), rng), _hsv(hue + 0.1, (0.1, 0.4), (0.2, 0.45), rng)]
        self.table = _hsv(rng.uniform(0, 1), (0.0, 0.3), (0.4, 0.8), rng)
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
        self.light = light / np.linalg.norm(light)
        self.ambient = float(rng.uniform(0.35, 0.5))

    def draw(self, t_world_cam: np.ndarray, polygons: list[Polygon]) -> np.ndarray:
        """Render the table top, then the polygons far to near (back faces culled), as 8-bit RGB."""
        w, h = (s * SUPERSAMPLE for s in self.size)
        t = np.linspace(0.0, 1.0, h)[:, None, None]
        image = ((1 - t) * self.sky[0] + t * self.sky[1]) * np.ones((h, w, 3))
        eye = t_world_cam[:3, 3]
        top = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * [*TABLE_HALF, 0.0]
        order = [(np.inf, to_camera(top, t_world_cam), np.array([0.0, 0.0, 1.0]), self.table)]
        for verts, normal, rgb in polygons:
            if normal @ (verts.mean(0) - eye) < 0:  # faces the camera
                cam = to_camera(verts, t_world_cam)
                order.append((float(cam[:, 2].mean()), cam, normal, rgb))
        order.sort(key=lambda p: -p[0])
        for _, cam, normal, rgb in order:
            if cam[:, 2].min() > NEAR_M:
                shade = self.ambient + (1 - self.ambient) * max(0.0, float(normal @ self.light))
                pts = np.round(project(cam, self.k) * 16).astype(np.int32)  # 4 fractional bits
                colour = tuple(float(c) for c in np.clip(rgb * shade, 0, 1))
                cv2.fillPoly(image, [pts], colour, cv2.LINE_8, 4)
        small = cv2.resize(image.astype(np.float32), self.size, interpolation=cv2.INTER_AREA)
        return np.round(np.clip(small, 0, 1) * 255).astype(np.uint8)


@dataclass
class Track:
    """One episode's motion, frame by frame: the camera's poses, the gripper's and the objects' positions."""

    motion: str
    camera: str
    poses: list[np.ndarray]
    gripper: list[np.ndarray]
    objects: dict[str, list[np.ndarray]]


def _track(
    scene: Scene,
    rng: np.random.Generator,
    spec: EpisodeSpec,
    gripper: np.ndarray,
    cams: dict[str, np.ndarray],
) -> Track:
    """Draw one motion (a camera slide, a gripper translation or a push) from the gripper's start."""
    n = spec.n_frames
    objects = {o.name: np.array([*o.xy, o.half_height_m]) for o in scene.objects}
    still = {name: [p] * n for name, p in objects.items()}
    if rng.random() < spec.camera_share:
        camera = str(rng.choice(FIXED_CAMERAS))
        return Track("camera_translate", camera, camera_slide(cams[camera], rng, n, spec.motion_m),
                     [gripper] * n, still)
    for _ in range(50):
        kind = str(rng.choice(MOTIONS[1:]))
        camera = str(rng.choice(FIXED_CAMERAS))
        r_cam = cams[camera][:3, :3]
        s = smoothstep(np.linspace(0.0, 1.0, n))[:, None]
        if kind == "translate":
            dist = float(rng.uniform(*(spec.motion_m or (0.03, 0.2))))
            v = r_cam @ direction_vector(str(rng.choice(DIRECTIONS))) * dist
            try:
                check_reachable(gripper + v)
            except UnreachableTargetError:
                continue
            return Track(kind, camera, [cams[camera]] * n, list(gripper + s * v), still)
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        d = (r_cam @ direction_vector(str(rng.choice(("left", "right", "forward", "backward")))))[:2]
        if np.linalg.norm(d) < 0.3:  # a direction along a steep camera's axis: not along the table
            continue
        d = np.array([*(d / np.linalg.norm(d)), 0.0])
        v = d * float(rng.uniform(*(spec.motion_m or (0.05, 0.15))))
        start = objects[obj.name]
        if np.any(np.abs((start + v)[:2]) > np.array(PLACEMENT_HALF) + 0.08):
            continue
        behind = start - d * (obj.size_m * np.sqrt(2) + FINGER_HALF[1])
        behind[2] = min(obj.half_height_m, 0.03)  # fingers closed on the table, against the object
        moved = {**still, obj.name: list(start + s * v)}
        return Track(kind, camera, [cams[camera]] * n, list(behind + s * v), moved)
    raise UnreachableTargetError("no feasible raster motion in this scene after 50 tries")


def generate_scene(seed: int, out_dir: Path, spec: EpisodeSpec) -> int:
    """Draw `spec.episodes_per_scene` episodes of one scene (layout as the simulator's for this seed).

    Episodes on disk are kept; returns how many there are. Frames are PNG, as the MuJoCo episodes'.
    """
    from PIL import Image

    dirs = [episode_dir(out_dir, seed, k) for k in range(spec.episodes_per_scene)]
    rng = np.random.default_rng(seed)
    fewest, most = spec.objects
    config = SceneConfig(seed=seed, n_objects=int(rng.integers(fewest, most + 1)), width=spec.width,
                         height=spec.height, cameras=FIXED_CAMERAS)
    scene = build_scene(config)
    painter = Painter(scene, np.random.default_rng([seed, LOOK_STREAM]))
    cams = {name: make_pose(c.rotation, np.array(c.pos)) for name, c in scene.cameras.items()}
    for ep_dir in dirs:
        start = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.2, 0.2), rng.uniform(0.06, 0.35)])
        track = _track(scene, rng, spec, start, cams)  # drawn for kept episodes too: the stream stays
        if (ep_dir / "truth.json").is_file():
            continue
        ep_dir.mkdir(parents=True, exist_ok=True)
        for t, pose in enumerate(track.poses):
            polys = _gripper(track.gripper[t])
            for obj in scene.objects:
                polys += _object(obj, track.objects[obj.name][t])
            Image.fromarray(painter.draw(pose, polys)).save(ep_dir / f"f{t}.png", compress_level=1)
        write_truth(ep_dir, track.camera, track.motion, spec, track.poses, track.gripper, track.objects)
    return len(dirs)
