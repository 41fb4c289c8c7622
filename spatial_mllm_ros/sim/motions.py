"""Scripted motions with labels (gripper and camera), and run_episode which turns one into an Episode."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from spatial_mllm_ros.conventions import DIRECTIONS, direction_of
from spatial_mllm_ros.sim.errors import MotionError, SceneConfigError, UnreachableTargetError
from spatial_mllm_ros.sim.geometry import make_pose, quat_to_mat, rot_z, smoothstep
from spatial_mllm_ros.sim.scene import (
    FINGER_HALF,
    GRIPPER_MAX_OPENING,
    PLACEMENT_HALF,
    WORKSPACE_MIN,
    SceneConfig,
    check_reachable,
)
from spatial_mllm_ros.sim.truth import CameraTrack, Episode, direction_vector
from spatial_mllm_ros.sim.world import RenderedFrame, SimWorld

LIFT_M = 0.10  # clearance above an object's top when carrying or approaching it
SUCCESS_TOLERANCE_M = 0.03
MOTION_SECONDS = 1.5  # simulated time a scripted motion takes where frames are few (motion_fps)
CameraPath = Callable[[float], np.ndarray]  # s in [0, 1] -> T_world_cam


@dataclass(frozen=True)
class Keyframe:
    """Gripper state the script reaches at fraction `t` of the episode, with an optional grasp/release."""

    t: float
    position: np.ndarray
    yaw: float
    opening: float
    grasp: str | None = None
    release: bool = False


@dataclass
class Plan:
    """A motion resolved against a world: gripper keyframes, an optional camera path, and labels."""

    keyframes: list[Keyframe]
    labels: dict[str, Any]
    camera: str | None = None
    camera_path: CameraPath | None = None

    def gripper_at(self, t: float) -> tuple[np.ndarray, float, float]:
        """Interpolated (position, yaw, opening) at fraction t, eased in and out between keyframes."""
        keys = self.keyframes
        for a, b in zip(keys, keys[1:]):
            if t <= b.t:
                s = 0.0 if b.t <= a.t else float(np.clip((t - a.t) / (b.t - a.t), 0.0, 1.0))
                s = smoothstep(s)
                return (
                    a.position + (b.position - a.position) * s,
                    a.yaw + (b.yaw - a.yaw) * s,
                    a.opening + (b.opening - a.opening) * s,
                )
        last = keys[-1]
        return last.position, last.yaw, last.opening


class _Builder:
    """Accumulates keyframes, each starting from the previous one."""

    def __init__(self, world: SimWorld) -> None:
        pose = world.gripper_pose()
        self.keys = [Keyframe(0.0, pose.position, world.gripper_yaw, world.gripper_opening)]

    @property
    def last(self) -> Keyframe:
        return self.keys[-1]

    def to(
        self, t: float, position: np.ndarray | None = None, what: str = "target", **changes: Any
    ) -> _Builder:
        if position is not None:
            check_reachable(position, what=what)
            changes["position"] = np.asarray(position, float)
        self.keys.append(
            dataclasses.replace(self.last, **{"t": t, "grasp": None, "release": False, **changes})
        )
        return self

    def plan(
        self,
        labels: dict[str, Any],
        camera: str | None = None,
        path: CameraPath | None = None,
    ) -> Plan:
        if self.last.t < 1.0:
            self.to(1.0)
        return Plan(self.keys, labels, camera, path)


class Motion:
    """A scripted motion: resolved against the world at the episode's start, judged at its end."""

    name: ClassVar[str] = ""

    def plan(self, world: SimWorld) -> Plan:
        """Keyframes and labels for this motion in `world`'s current state."""
        raise NotImplementedError

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        """Outcome labels measured on the finished episode (at least "success")."""
        return {"success": True}


def _horizontal(world: SimWorld, camera: str, direction: str) -> np.ndarray:
    """Return the unit world xy vector of a direction word in a camera, flattened onto the table."""
    v = world.extrinsics(camera)[:3, :3] @ direction_vector(direction)
    xy = v[:2]
    if np.linalg.norm(xy) < 0.3:
        raise MotionError(
            f"direction {direction!r} in camera {camera!r} is (nearly) vertical: "
            "objects can only be moved along the table"
        )
    return xy / np.linalg.norm(xy)


def _yaw_of(quat: np.ndarray) -> float:
    r = quat_to_mat(quat)
    return float(np.arctan2(r[1, 0], r[0, 0]))


def _first_object(world: SimWorld, name: str | None) -> str:
    return name if name is not None else world.scene.objects[0].name


def _check_on_table(xy: np.ndarray, what: str) -> None:
    limit = np.array(PLACEMENT_HALF) + 0.08
    if np.any(np.abs(xy) > limit):
        raise UnreachableTargetError(
            f"{what} {np.round(xy, 3).tolist()} m is off the usable table area "
            f"|x| <= {limit[0]:.2f}, |y| <= {limit[1]:.2f}"
        )


@dataclass(frozen=True)
class Translate(Motion):
    """Move the gripper by a vector (m) given in a camera's optical frame."""

    vector_cam: tuple[float, float, float] = (-0.1, 0.0, 0.0)
    camera: str = "front"
    name: ClassVar[str] = "translate"

    def plan(self, world: SimWorld) -> Plan:
        v_cam = np.asarray(self.vector_cam, float)
        target = world.gripper_pose().position + world.extrinsics(self.camera)[:3, :3] @ v_cam
        labels = {
            "motion": self.name,
            "camera": self.camera,
            "direction": direction_of(v_cam),
            "distance_mm": round(float(np.linalg.norm(v_cam)) * 1000),
            "vector_cam_mm": [round(float(c) * 1000) for c in v_cam],
        }
        return _Builder(world).to(0.1).to(0.9, target, what="translate target").plan(labels)

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        truth = episode.gripper_motion(0, -1, self.camera)
        want = np.asarray(self.vector_cam) * 1000
        err = float(np.linalg.norm(np.asarray(truth.vector_cam_mm) - want))
        return {"success": err <= SUCCESS_TOLERANCE_M * 1000}


def translate(
    direction: str | Sequence[float], distance_m: float | None = None, camera: str = "front"
) -> Translate:
    """Translate the gripper `distance_m` towards a direction word, or by a camera-frame vector (m)."""
    if isinstance(direction, str):
        if distance_m is None or not distance_m > 0:
            raise MotionError(f"translate {direction!r} needs a positive distance_m, got {distance_m}")
        vec = direction_vector(direction) * float(distance_m)
    else:
        vec = np.asarray(direction, float)
        if vec.shape != (3,) or not np.all(np.isfinite(vec)) or np.linalg.norm(vec) < 1e-6:
            raise MotionError(f"translate vector must be 3 finite numbers, not all zero; got {direction!r}")
        if distance_m is not None:
            vec = vec / np.linalg.norm(vec) * float(distance_m)
    return Translate(tuple(float(c) for c in vec), camera)


@dataclass(frozen=True)
class Rotate(Motion):
    """Rotate the gripper about the vertical by `angle_deg` (positive: counterclockwise seen from above)."""

    angle_deg: float = 30.0
    name: ClassVar[str] = "rotate"

    def plan(self, world: SimWorld) -> Plan:
        if not 0 < abs(self.angle_deg) <= 180:
            raise MotionError(f"rotate angle_deg must be in [-180, 180] and non-zero, got {self.angle_deg}")
        labels = {
            "motion": self.name,
            "angle_deg": float(self.angle_deg),
            "direction": "counterclockwise" if self.angle_deg > 0 else "clockwise",
        }
        return (
            _Builder(world).to(0.1).to(0.9, yaw=world.gripper_yaw + np.radians(self.angle_deg)).plan(labels)
        )

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        got = episode.gripper_motion(0, -1, next(iter(episode.cameras))).rotation_deg
        return {"success": abs(got - abs(self.angle_deg)) < 3.0}


def _grasp_approach(world: SimWorld, name: str) -> tuple[_Builder, np.ndarray, float, float, float]:
    """Keyframes up to a closed grasp on `name`: returns builder, object xy, grasp z, carry z, width."""
    spec = world.scene.object(name)
    pose = world.object_pose(name)
    width = 2 * spec.size_m
    if width > GRIPPER_MAX_OPENING - 0.01:
        raise MotionError(
            f"{name} is {width * 1000:.0f} mm wide: too wide for the "
            f"{GRIPPER_MAX_OPENING * 1000:.0f} mm gripper"
        )
    yaw = 0.0
    if spec.shape == "cube":  # square the fingers to the cube's faces, turning as little as possible
        yaw = (_yaw_of(pose.quaternion) + np.pi / 4) % (np.pi / 2) - np.pi / 4
    xy = pose.position[:2]
    z_grasp = max(float(pose.position[2]), WORKSPACE_MIN[2] + 0.002)
    z_carry = 2 * spec.half_height_m + LIFT_M
    b = _Builder(world).to(0.05)
    b.to(0.25, np.array([*xy, z_carry]), what=f"approach to {name}", yaw=yaw, opening=GRIPPER_MAX_OPENING)
    b.to(0.40, np.array([*xy, z_grasp]), what=f"grasp of {name}")
    b.to(0.50, opening=max(width - 0.002, 0.0), grasp=name)
    return b, xy, z_grasp, z_carry, width


@dataclass(frozen=True)
class PickPlace(Motion):
    """Pick an object and place it `distance_m` towards a direction (in a camera) on the table."""

    object: str | None = None
    direction: str = "right"
    distance_m: float = 0.15
    camera: str = "front"
    name: ClassVar[str] = "pick_place"

    def plan(self, world: SimWorld) -> Plan:
        name = _first_object(world, self.object)
        d = _horizontal(world, self.camera, self.direction)
        b, xy, z_grasp, z_carry, _ = _grasp_approach(world, name)
        goal = xy + d * self.distance_m
        _check_on_table(goal, f"place target for {name}")
        b.to(0.62, np.array([*xy, z_carry]), what=f"lift of {name}")
        b.to(0.80, np.array([*goal, z_carry]), what=f"carry of {name}")
        b.to(0.88, np.array([*goal, z_grasp + 0.003]), what=f"place of {name}")
        b.to(0.92, opening=GRIPPER_MAX_OPENING, release=True)
        b.to(1.0, np.array([*goal, z_carry]))
        labels = {
            "motion": self.name,
            "object": name,
            "camera": self.camera,
            "direction": self.direction,
            "distance_mm": round(self.distance_m * 1000),
            "goal_xy": [round(float(v), 4) for v in goal],
        }
        return b.plan(labels)

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        name = episode.labels["object"]
        end = episode.object_poses[name][-1, :3]
        goal = np.array(episode.labels["goal_xy"])
        return {"success": bool(np.linalg.norm(end[:2] - goal) < SUCCESS_TOLERANCE_M)}


@dataclass(frozen=True)
class FailedGrasp(Motion):
    """Grasp an object, start lifting it and let it slip back onto the table."""

    object: str | None = None
    name: ClassVar[str] = "failed_grasp"

    def plan(self, world: SimWorld) -> Plan:
        name = _first_object(world, self.object)
        b, xy, z_grasp, z_carry, _ = _grasp_approach(world, name)
        # the object slips out of the fingers a third of the way up
        b.to(
            0.58, np.array([*xy, z_grasp + 0.35 * (z_carry - z_grasp)]), what=f"lift of {name}", release=True
        )
        b.to(0.75, np.array([*xy, z_carry]))
        labels = {"motion": self.name, "object": name, "failure": "slipped"}
        return b.plan(labels)

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        return {"success": False}


@dataclass(frozen=True)
class Push(Motion):
    """Push an object along the table `distance_m` towards a direction (in a camera) with closed fingers."""

    object: str | None = None
    direction: str = "right"
    distance_m: float = 0.10
    camera: str = "front"
    name: ClassVar[str] = "push"

    def plan(self, world: SimWorld) -> Plan:
        name = _first_object(world, self.object)
        spec = world.scene.object(name)
        d = _horizontal(world, self.camera, self.direction)
        xy = world.object_pose(name).position[:2]
        reach = spec.size_m * (np.sqrt(2) if spec.shape == "cube" else 1.0) + FINGER_HALF[1]
        z_push = max(WORKSPACE_MIN[2] + 0.003, min(spec.half_height_m, 0.03))
        z_high = 2 * spec.half_height_m + LIFT_M
        start, end = xy - d * (reach + 0.03), xy + d * (self.distance_m - reach)
        _check_on_table(xy + d * self.distance_m, f"push target for {name}")
        yaw = float(np.arctan2(-d[0], d[1]))  # the fingers' broad faces (gripper y) face the push
        b = _Builder(world).to(0.05)
        b.to(0.2, np.array([*start, z_high]), what="push approach", yaw=yaw, opening=0.0)
        b.to(0.35, np.array([*start, z_push]), what="push start")
        b.to(0.85, np.array([*end, z_push]), what="push end")
        b.to(1.0, np.array([*end, z_high]))
        labels = {
            "motion": self.name,
            "object": name,
            "camera": self.camera,
            "direction": self.direction,
            "distance_mm": round(self.distance_m * 1000),
        }
        return b.plan(labels)

    def evaluate(self, episode: Episode) -> dict[str, Any]:
        truth = episode.object_motion(episode.labels["object"], 0, -1, self.camera)
        return {"success": truth.moved and truth.direction == self.direction}


@dataclass(frozen=True)
class Idle(Motion):
    """Nothing moves (the negative example for every motion question)."""

    name: ClassVar[str] = "idle"

    def plan(self, world: SimWorld) -> Plan:
        return _Builder(world).plan({"motion": self.name})


def _world_camera(world: SimWorld, camera: str) -> np.ndarray:
    """Pose of a fixed camera (UnknownCameraError for an unknown one, MotionError for a wrist camera)."""
    t0 = world.extrinsics(camera)
    if world.scene.cameras[camera].mount != "world":
        raise MotionError(f"camera {camera!r} rides on the gripper: only fixed cameras pan, dolly or orbit")
    return t0


@dataclass(frozen=True)
class _CameraMotion(Motion):
    """A fixed camera moving along a path while the gripper and the objects stay still."""

    camera: str = "front"

    def plan(self, world: SimWorld) -> Plan:
        """Keyframes (none: the gripper holds still), the camera path and its labels."""
        path, labels = self._path(_world_camera(world, self.camera))
        return _Builder(world).plan({"motion": self.name, "camera": self.camera, **labels}, self.camera, path)

    def _path(self, t0: np.ndarray) -> tuple[CameraPath, dict[str, Any]]:
        """Return the camera pose along s in [0, 1] from its start pose t0, and the motion's own labels."""
        raise NotImplementedError


@dataclass(frozen=True)
class CameraPan(_CameraMotion):
    """Turn a fixed camera about the vertical by `angle_deg` (positive: pans right)."""

    angle_deg: float = 15.0
    name: ClassVar[str] = "camera_pan"

    def _path(self, t0: np.ndarray) -> tuple[CameraPath, dict[str, Any]]:
        angle = np.radians(self.angle_deg)

        def path(s: float) -> np.ndarray:
            return make_pose(rot_z(-angle * s) @ t0[:3, :3], t0[:3, 3])

        return path, {
            "angle_deg": float(self.angle_deg),
            "direction": "right" if self.angle_deg > 0 else "left",
        }


@dataclass(frozen=True)
class CameraDolly(_CameraMotion):
    """Move a fixed camera along its viewing axis by `distance_m` (positive: forward)."""

    distance_m: float = 0.15
    name: ClassVar[str] = "camera_dolly"

    def _path(self, t0: np.ndarray) -> tuple[CameraPath, dict[str, Any]]:
        def path(s: float) -> np.ndarray:
            return make_pose(t0[:3, :3], t0[:3, 3] + t0[:3, 2] * self.distance_m * s)

        return path, {
            "distance_mm": round(abs(self.distance_m) * 1000),
            "direction": "forward" if self.distance_m > 0 else "backward",
        }


@dataclass(frozen=True)
class CameraOrbit(_CameraMotion):
    """Swing a fixed camera around the table point it looks at by `angle_deg` (positive: counterclockwise)."""

    angle_deg: float = 20.0
    name: ClassVar[str] = "camera_orbit"

    def _path(self, t0: np.ndarray) -> tuple[CameraPath, dict[str, Any]]:
        eye, axis = t0[:3, 3], t0[:3, 2]
        pivot = eye - axis * (eye[2] / axis[2]) if axis[2] < -0.05 else np.zeros(3)
        angle = np.radians(self.angle_deg)

        def path(s: float) -> np.ndarray:
            r = rot_z(angle * s)
            return make_pose(r @ t0[:3, :3], pivot + r @ (eye - pivot))

        return path, {
            "angle_deg": float(self.angle_deg),
            "direction": "counterclockwise" if self.angle_deg > 0 else "clockwise",
            "pivot": [round(float(v), 4) for v in pivot],
        }


MOTIONS: dict[str, type[Motion]] = {
    m.name: m
    for m in (Translate, Rotate, PickPlace, Push, FailedGrasp, Idle, CameraPan, CameraDolly, CameraOrbit)
}


def parse_motion(spec: str) -> Motion:
    """Build a motion from "name" or "name:key=value,key=value" (e.g. "push:object=red cube,direction=left").

    "translate" also takes direction=, distance= (m) and camera=.
    """
    name, _, rest = spec.strip().partition(":")
    kwargs: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise MotionError(f"motion spec {spec!r}: expected key=value, got {item!r}")
        kwargs[key.strip()] = value.strip()
    if name == "translate":
        direction = kwargs.pop("direction", "left")
        distance = float(kwargs.pop("distance", kwargs.pop("distance_m", "0.1")))
        camera = kwargs.pop("camera", "front")
        if kwargs:
            raise MotionError(f"motion spec {spec!r}: unknown keys {sorted(kwargs)}")
        return translate(direction, distance, camera)
    if name not in MOTIONS:
        raise MotionError(f"unknown motion {name!r}; known: {', '.join(MOTIONS)}, random")
    cls = MOTIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key not in fields:
            raise MotionError(f"motion {name!r} has no parameter {key!r}; it takes: {', '.join(fields)}")
        typed[key] = float(value) if isinstance(fields[key].default, float) else value
    return cls(**typed)


_CAMERA_FOR_DIRECTIONS = ("front", "side", "overhead")
_FLAT_DIRECTIONS = ("left", "right", "forward", "backward")


def _random_of_kind(
    kind: str, camera: str, obj: str, rng: np.random.Generator, distance_m: tuple[float, float] | None
) -> Motion:
    sign = float(rng.choice([-1.0, 1.0]))

    def distance(lo: float, hi: float) -> float:
        return float(rng.uniform(*(distance_m or (lo, hi))))

    if kind == "translate":
        return translate(str(rng.choice(DIRECTIONS)), distance(0.03, 0.2), camera)
    if kind == "rotate":
        return Rotate(sign * float(rng.uniform(15, 90)))
    if kind == "pick_place":
        return PickPlace(obj, str(rng.choice(_FLAT_DIRECTIONS)), distance(0.08, 0.2), camera)
    if kind == "push":
        return Push(obj, str(rng.choice(_FLAT_DIRECTIONS)), distance(0.05, 0.15), camera)
    if kind == "failed_grasp":
        return FailedGrasp(obj)
    if kind == "camera_pan":
        return CameraPan(camera, sign * float(rng.uniform(5, 20)))
    if kind == "camera_dolly":
        return CameraDolly(camera, sign * distance(0.05, 0.2))
    if kind == "camera_orbit":
        return CameraOrbit(camera, sign * float(rng.uniform(10, 30)))
    return Idle()


def _known_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    """Return the kinds to draw from (all when none are given); MotionError for an unknown one."""
    kinds = tuple(kinds or MOTIONS)
    for name in kinds:
        if name not in MOTIONS:
            raise MotionError(f"unknown motion {name!r}; known: {', '.join(MOTIONS)}")
    return kinds


def _random_kinds(spec: str) -> list[str] | None:
    """Return the kinds of a "random" / "random:push,idle" spec (None: any kind)."""
    return [k for k in spec.partition(":")[2].split(",") if k] or None


def random_motion(
    world: SimWorld,
    rng: np.random.Generator,
    kinds: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    distance_m: tuple[float, float] | None = None,
) -> Motion:
    """Draw a random motion that is feasible in `world` (retries until its plan resolves).

    Directions are worded in one of `cameras`; by default the scene's fixed cameras, or the wrist camera
    when it is the scene's only one (camera motions need a fixed camera and are redrawn for the wrist).
    `distance_m` (lowest, highest) replaces each kind's own range of how far it moves the gripper, an
    object or the camera (small motions are a test of their own); rotations keep theirs.
    """
    kinds = _known_kinds(kinds)
    fixed = [c for c in _CAMERA_FOR_DIRECTIONS if c in world.scene.cameras] or list(world.scene.cameras)
    cameras = list(cameras or fixed)
    for _ in range(50):
        motion = _random_of_kind(
            str(rng.choice(kinds)),
            str(rng.choice(cameras)),
            str(rng.choice(world.scene.object_names)),
            rng,
            distance_m,
        )
        try:
            motion.plan(world)
        except (UnreachableTargetError, MotionError):
            continue
        return motion
    raise MotionError(f"no feasible motion among {list(kinds)} in this scene after 50 tries")


def motion_from_spec(spec: str, world: SimWorld, rng: np.random.Generator) -> Motion:
    """Build a motion from a parse_motion string, or draw one for "random" / "random:push,idle" (kinds)."""
    if spec.startswith("random"):
        return random_motion(world, rng, _random_kinds(spec))
    return parse_motion(spec)


def check_motion_spec(spec: str) -> None:
    """Raise MotionError for a spec motion_from_spec would refuse, without drawing or planning a motion."""
    if spec.startswith("random"):
        _known_kinds(_random_kinds(spec))
    else:
        parse_motion(spec)


class ScriptedEpisode:
    """Runs a motion frame by frame and collects the frames and truth into an Episode.

    run_episode drives it to the end at once; the live node advances it one frame per timer tick.
    """

    def __init__(
        self,
        world: SimWorld,
        motion: Motion,
        n_frames: int = 16,
        fps: float = 10.0,
        *,
        cameras: Sequence[str] | None = None,
        depth: bool = True,
        seg: bool = True,
        n_track_points: int = 32,
        start_ns: int = 0,
    ) -> None:
        if n_frames < 2:
            raise SceneConfigError(f"n_frames must be >= 2, got {n_frames}")
        if not 0 < fps <= 1000:
            raise SceneConfigError(f"fps must be in (0, 1000], got {fps}")
        self.world, self.motion, self.n_frames, self.fps = world, motion, n_frames, fps
        self.depth, self.seg = depth, seg
        self.plan = motion.plan(world)
        self.index = 0  # the next frame to capture
        cfg, n = world.config, n_frames
        h, w = cfg.height, cfg.width
        self._tracks_body = {
            o.name: o.surface_points(n_track_points, np.random.default_rng(cfg.seed + 1009 * i))
            for i, o in enumerate(world.scene.objects)
        }
        self.cameras = {
            c: CameraTrack(
                c,
                np.zeros((n, h, w, 3), np.uint8),
                np.zeros((n, h, w), np.float32) if depth else None,
                np.zeros((n, h, w), np.uint8) if seg else None,
                world.intrinsics(c),
                np.zeros((n, 4, 4)),
            )
            for c in (cameras or world.scene.cameras)
        }
        self._gripper = np.zeros((n, 7))
        self._opening = np.zeros(n)
        self._objects = {o: np.zeros((n, 7)) for o in world.scene.object_names}
        self._tracks = {o: np.zeros((n, n_track_points, 3)) for o in world.scene.object_names}
        self._substeps = max(1, round(1.0 / (fps * world.dt)))
        self._fired: set[int] = set()
        self.stamps_ns = start_ns + np.round(np.arange(n) * 1e9 / fps).astype(np.int64)

    @property
    def done(self) -> bool:
        """True once every frame is captured."""
        return self.index >= self.n_frames

    def _advance(self) -> None:
        """Physics from the previous frame's time to this frame's, following the plan."""
        world, plan, total = self.world, self.plan, (self.n_frames - 1) * self._substeps
        for k in range(self._substeps):
            tau = ((self.index - 1) * self._substeps + k + 1) / total
            pos, yaw, grip = plan.gripper_at(tau)
            world.set_gripper_target(pos, yaw)
            world.set_gripper_opening(float(np.clip(grip, 0.0, GRIPPER_MAX_OPENING)))
            for idx, key in enumerate(plan.keyframes):
                if idx not in self._fired and key.t <= tau:
                    self._fired.add(idx)
                    if key.grasp:
                        world.grasp(key.grasp)
                    if key.release:
                        world.release()
            world.step(1)

    def step(self) -> dict[str, RenderedFrame]:
        """Advance to the next frame, record its truth and return what each camera rendered."""
        if self.done:
            raise MotionError("the scripted episode is already complete")
        world, i = self.world, self.index
        if i:
            self._advance()
        if self.plan.camera_path is not None:
            world.set_camera_pose(self.plan.camera, self.plan.camera_path(i / (self.n_frames - 1)))
        self._gripper[i] = world.gripper_pose().as_array()
        self._opening[i] = world.gripper_opening
        for name, poses in self._objects.items():
            pose = world.object_pose(name)
            poses[i] = pose.as_array()
            self._tracks[name][i] = pose.apply(self._tracks_body[name])
        rendered = {}
        for c, track in self.cameras.items():
            out = rendered[c] = world.render(c, depth=self.depth, seg=self.seg)
            track.rgb[i] = out.rgb
            if self.depth:
                track.depth[i] = out.depth
            if self.seg:
                track.seg[i] = out.seg
            track.T_world_cam[i] = world.extrinsics(c)
        self.index += 1
        return rendered

    def episode(self) -> Episode:
        """Return the finished Episode, with the motion's outcome labels ("success", ...)."""
        if not self.done:
            raise MotionError(f"episode incomplete: {self.index} of {self.n_frames} frames captured")
        ep = Episode(
            self.world.scene,
            dict(self.plan.labels),
            self.fps,
            self.stamps_ns,
            self.cameras,
            self._gripper,
            self._opening,
            self._objects,
            self._tracks,
        )
        ep.labels.update(self.motion.evaluate(ep))
        return ep


def motion_fps(n_frames: int) -> float:
    """Return the frame rate that spreads `n_frames` over MOTION_SECONDS of simulated time.

    A motion's pace is its frame count over fps: the gripper's controller lags a target that moves
    faster, and a push played in 0.4 s (5 frames at 10 fps) leaves its object where it was (0 of 12
    pushes succeeded so, 12 of 12 over 1.5 s). Datasets that keep few frames take them at this rate.
    """
    if n_frames < 2:
        raise SceneConfigError(f"n_frames must be >= 2, got {n_frames}")
    return (n_frames - 1) / MOTION_SECONDS


def run_episode(
    config: SceneConfig | SimWorld,
    motion: Motion,
    n_frames: int = 16,
    fps: float = 10.0,
    *,
    cameras: Sequence[str] | None = None,
    depth: bool = True,
    seg: bool = True,
    n_track_points: int = 32,
    start_ns: int = 0,
) -> Episode:
    """Run `motion` from the world's current state, capturing `n_frames` frames at `fps` (simulated time).

    Given a SceneConfig a fresh world is built (and closed); given a SimWorld it is used as it is.
    """
    world = config if isinstance(config, SimWorld) else SimWorld(config)
    try:
        runner = ScriptedEpisode(
            world,
            motion,
            n_frames,
            fps,
            cameras=cameras,
            depth=depth,
            seg=seg,
            n_track_points=n_track_points,
            start_ns=start_ns,
        )
        while not runner.done:
            runner.step()
        return runner.episode()
    finally:
        if world is not config:
            world.close()
