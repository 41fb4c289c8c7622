"""Simulated robot episodes for the tiny recipe: frames on disk plus the truth stage 1 and the questions use.

Each episode is one MuJoCo scene (random objects, gripper start and camera jitter) in which either the
gripper / an object moves (the simulator's scripted motions) or the camera translates along a random
axis. Frames are written at the simulator's 320x240 (what a robot camera gives the runtime); per frame
we keep the dense targets of vision pretraining on the model tile's 8x8 patch grid (class fractions and
mean depth per patch) and the camera-frame positions of the gripper and every object.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_mllm_ros.config import option
from spatial_mllm_ros.sim.profiles import PROFILES
from spatial_mllm_ros.sim.scene import MAX_OBJECTS

SEG_BG, SEG_TABLE, SEG_GRIPPER = 0, 1, 2
MAX_DEPTH_M = 3.0
FIXED_CAMERAS = ("front", "side", "overhead")
SMALL_MOTION_M = (0.01, 0.03)
OBJECT_MOTIONS = ("translate", "push", "pick_place", "failed_grasp", "rotate")


def colour_classes() -> tuple[str, ...]:
    """Segmentation classes of pretraining: background, table, gripper, then one per object colour."""
    from spatial_mllm_ros.sim import COLOURS

    return ("background", "table", "gripper", *COLOURS)


@dataclass
class EpisodeSpec:
    """Knobs of the episode generator."""

    width: int = 320
    height: int = 240
    n_frames: int = 5
    grid: int = 8  # patch grid of the model's tile (112 px / 14 px)
    camera_share: float = 0.3  # fraction of episodes where the camera moves instead of the gripper
    episodes_per_scene: int = 8
    profile: str = option(
        "in_distribution", help="look of every scene (sim.profiles; the shift suite's sets)", choices=PROFILES
    )
    objects: tuple[int, int] = option((1, 4), help="objects per scene: fewest, most", range=(1, MAX_OBJECTS))
    motion_m: tuple[float, float] | None = option(
        None,
        help="how far the gripper, an object or the camera moves (m): lowest, highest; none: each "
        "motion's own range (camera slides 4-15 cm)",
        range=(0.001, 0.3),
    )
    # The training mix: shares of scenes drawn, per scene seed, instead of the plain look above. Off in
    # the shift suite's sets, each of which is one look.
    randomized_share: float = option(
        0.0, help="share of scenes with every appearance group drawn (sim profile 'randomized')",
        range=(0.0, 1.0))
    wrist_share: float = option(
        0.0, help="share of scenes seen only by the gripper-mounted wrist camera", range=(0.0, 1.0))
    small_motion_share: float = option(
        0.0, help="share of scenes whose motions move 1-3 cm (where 'did it move' is hardest)",
        range=(0.0, 1.0))

    def for_scene(self, seed: int) -> tuple[str, bool, EpisodeSpec]:
        """Draw a scene's look from the mix: (profile, wrist camera only, spec with its motion range).

        Its own random stream of the seed, so the mix never moves the layout drawn from the seed itself.
        """
        look, wrist, small = np.random.default_rng([seed, 0x100C]).random(3)
        profile = "randomized" if look < self.randomized_share else self.profile
        spec = dataclasses.replace(self, motion_m=SMALL_MOTION_M) if small < self.small_motion_share else self
        return profile, bool(wrist < self.wrist_share), spec


def patch_targets(
    seg: np.ndarray, depth: np.ndarray, seg_class: np.ndarray, grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class fractions (grid*grid, n_classes) and mean depth (grid*grid,) per patch of the resized frame."""
    h, w = seg.shape
    cls = seg_class[seg]
    n_cls = len(colour_classes())
    ys = np.arange(h) * grid // h
    xs = np.arange(w) * grid // w
    cell = (ys[:, None] * grid + xs[None, :]).reshape(-1)
    frac = np.bincount(cell * n_cls + cls.reshape(-1), minlength=grid * grid * n_cls).astype(np.float32)
    frac = frac.reshape(grid * grid, n_cls)
    frac /= frac.sum(1, keepdims=True)
    d = np.clip(np.where(np.isfinite(depth), depth, MAX_DEPTH_M), 0.0, MAX_DEPTH_M).reshape(-1)
    mean_d = np.bincount(cell, weights=d, minlength=grid * grid) / np.bincount(cell, minlength=grid * grid)
    return frac, mean_d.astype(np.float32)


def camera_slide(
    t0: np.ndarray, rng: np.random.Generator, n: int, distance_m: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """Poses of a camera sliding from t0 along one random optical axis (a little off-axis noise).

    It slides 4-15 cm, or within `distance_m` (lowest, highest).
    """
    axis = int(rng.integers(3))
    d = np.zeros(3)
    d[axis] = float(rng.choice([-1.0, 1.0]) * rng.uniform(*(distance_m or (0.04, 0.15))))
    d += rng.normal(0.0, 0.006, 3)
    poses = []
    for k in range(n):
        t = t0.copy()
        t[:3, 3] = t0[:3, 3] + t0[:3, :3] @ (d * k / (n - 1))
        poses.append(t)
    return poses


def _episode(world, rng: np.random.Generator, spec: EpisodeSpec, seg_class: np.ndarray, ep_dir: Path) -> dict:
    """One episode in a live world: camera translation or a scripted gripper/object motion."""
    from PIL import Image

    from spatial_mllm_ros.sim import motion_fps, random_motion, run_episode

    ep_dir.mkdir(parents=True, exist_ok=True)
    cameras = world.config.cameras
    fixed = [c for c in cameras if c in FIXED_CAMERAS]  # a wrist camera moves with the gripper's motions
    if fixed and rng.random() < spec.camera_share:
        camera = str(rng.choice(fixed))
        frames, cams = [], []
        for pose in camera_slide(world.extrinsics(camera), rng, spec.n_frames, spec.motion_m):
            world.set_camera_pose(camera, pose)
            f = world.render(camera)
            frames.append((f.rgb, f.depth, f.seg))
            cams.append(world.extrinsics(camera))
        gripper = [world.gripper_pose().position.copy()] * spec.n_frames
        objects = {
            o: [world.object_pose(o).position.copy()] * spec.n_frames for o in world.scene.object_names
        }
        motion = "camera_translate"
    else:
        m = random_motion(world, rng, OBJECT_MOTIONS, distance_m=spec.motion_m)
        camera = getattr(m, "camera", None) or str(rng.choice(cameras))
        ep = run_episode(world, m, spec.n_frames, motion_fps(spec.n_frames), cameras=(camera,), seg=True,
                         n_track_points=1)
        track = ep.cameras[camera]
        frames = [(track.rgb[t], track.depth[t], track.seg[t]) for t in range(spec.n_frames)]
        cams = [track.T_world_cam[t] for t in range(spec.n_frames)]
        gripper = [ep.gripper_poses[t, :3] for t in range(spec.n_frames)]
        objects = {o: [ep.object_poses[o][t, :3] for t in range(spec.n_frames)] for o in ep.object_poses}
        motion = m.name
    fracs, depths = [], []
    for t, (rgb, depth, seg) in enumerate(frames):
        Image.fromarray(rgb).save(ep_dir / f"f{t}.png", compress_level=1)
        frac, dep = patch_targets(seg, depth, seg_class, spec.grid)
        fracs.append(frac)
        depths.append(dep)
    np.savez_compressed(ep_dir / "targets.npz", seg=np.stack(fracs), depth=np.stack(depths))
    return write_truth(ep_dir, camera, motion, spec, cams, gripper, objects)


def write_truth(
    ep_dir: Path,
    camera: str,
    motion: str,
    spec: EpisodeSpec,
    cams: list[np.ndarray],
    gripper: list[np.ndarray],
    objects: dict[str, list[np.ndarray]],
) -> dict:
    """Write and return an episode's truth.json: each frame's camera pose and gripper and object positions.

    Every question of the episode is drawn from it (multispa.train.questions).
    """
    truth = {
        "camera": camera,
        "motion": motion,
        "width": spec.width,
        "height": spec.height,
        "T_world_cam": [np.asarray(c).tolist() for c in cams],
        "gripper": [np.asarray(g).tolist() for g in gripper],
        "objects": {o: [np.asarray(p).tolist() for p in ps] for o, ps in objects.items()},
    }
    (ep_dir / "truth.json").write_text(json.dumps(truth))
    return truth


def episode_dir(out_dir: Path, seed: int, k: int) -> Path:
    """Folder of a scene's k-th episode (ep200000_03): the name carries the scene seed.

    So held-out and training scenes are told apart from a listing alone.
    """
    return out_dir / f"ep{seed:06d}_{k:02d}"


def failed_note(out_dir: Path, seed: int, k: int) -> Path:
    """Note left where an episode could not be made (failed-200000_03.txt), saying why."""
    return out_dir / f"failed-{seed:06d}_{k:02d}.txt"


def scene_seed(path: Path) -> int:
    """Scene seed of an episode folder or of a failed episode's note (the inverse of the two above)."""
    return int(path.stem.rpartition("_")[0].removeprefix("failed-").removeprefix("ep"))


def generate_scene(seed: int, out_dir: Path, spec: EpisodeSpec) -> int:
    """Simulate `spec.episodes_per_scene` episodes in one scene; returns how many were made.

    One GL context serves them all (creating it is the expensive part); the gripper starts each episode
    at a random reachable point.
    """
    from spatial_mllm_ros.sim import SceneConfig, SimWorld, shift_profile
    from spatial_mllm_ros.sim.scene import parse_object_name

    dirs = [episode_dir(out_dir, seed, k) for k in range(spec.episodes_per_scene)]
    if all((d / "truth.json").is_file() for d in dirs):  # a rerun: no GL context needed
        return len(dirs)
    rng = np.random.default_rng(seed)
    fewest, most = spec.objects
    profile, wrist, spec = spec.for_scene(seed)
    base = SceneConfig(
        n_objects=int(rng.integers(fewest, most + 1)),
        width=spec.width,
        height=spec.height,
        cameras=FIXED_CAMERAS,
    )
    config = shift_profile(profile).scene_config(seed, base)
    if wrist:
        config = dataclasses.replace(config, cameras=("wrist",))
    classes = colour_classes()
    made = 0
    with SimWorld(config) as world:
        seg_class = np.zeros(256, np.int64)
        seg_class[1], seg_class[2] = SEG_TABLE, SEG_GRIPPER
        for obj in world.scene.objects:
            seg_class[obj.seg_id] = classes.index(parse_object_name(obj.name)[0])
        for k, ep_dir in enumerate(dirs):
            if (ep_dir / "truth.json").is_file():
                made += 1
                continue
            world.reset()
            start = (rng.uniform(-0.25, 0.25), rng.uniform(-0.2, 0.2), rng.uniform(0.06, 0.35))
            world.set_gripper_target(start)
            world.step(250)
            try:
                _episode(world, rng, spec, seg_class, ep_dir)
                made += 1
            except Exception as exc:  # an infeasible scripted motion: skip the episode, say why
                failed_note(out_dir, seed, k).write_text(f"{type(exc).__name__}: {exc}\n")
    return made


def generate_range(first: int, count: int, out_dir: Path, spec: EpisodeSpec, step: int = 1) -> int:
    """Generate scenes with seeds first, first+step, ... (count of them); episodes on disk are kept."""
    return sum(generate_scene(first + k * step, out_dir, spec) for k in range(count))
