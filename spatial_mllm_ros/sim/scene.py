"""Tabletop scenes: the configuration, domain randomisation by seed, and the MJCF built from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from spatial_mllm_ros.config import from_dict
from spatial_mllm_ros.sim.appearance import (
    AppearanceConfig,
    Light,
    Look,
    Surface,
    as_rgb,
    camera_jitters,
    randomize_look,
    shade,
    stream,
)
from spatial_mllm_ros.sim.errors import (
    SceneConfigError,
    UnknownCameraError,
    UnknownObjectError,
    UnreachableTargetError,
)
from spatial_mllm_ros.sim.geometry import MUJOCO_TO_OPTICAL, look_at
from spatial_mllm_ros.sim.photos import png_bytes
from spatial_mllm_ros.sim.sensor import SensorEffects

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.10, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "purple": (0.55, 0.20, 0.75),
    "white": (0.95, 0.95, 0.95),
    "cyan": (0.10, 0.80, 0.85),
}
SHAPES: tuple[str, ...] = ("cube", "cylinder", "sphere")
CAMERA_NAMES: tuple[str, ...] = ("front", "side", "overhead", "wrist")
MAX_OBJECTS = 6

# Segmentation ids: 0 is background (floor, sky); objects follow in scene order from OBJECT_ID_BASE.
TABLE_ID, GRIPPER_ID, OBJECT_ID_BASE = 1, 2, 3

TABLE_HALF = (0.55, 0.45)  # table top half extents (m); its surface is the plane z = 0
TABLE_LEG_HEIGHT = 0.75
# Box the gripper's tool centre point (between the fingertips) can reach, in world metres.
WORKSPACE_MIN = (-0.45, -0.40, 0.02)
WORKSPACE_MAX = (0.45, 0.40, 0.60)
GRIPPER_MAX_OPENING = 0.10  # distance between the fingers' inner faces (m)
FINGER_HALF = (0.008, 0.012, 0.04)  # finger box half extents; a finger spans z in [-0.02, 0.06] of the TCP
PLACEMENT_HALF = (0.22, 0.20)  # objects are placed with centres in this box (m)

# Nominal fixed camera rigs: eye and look-at target in world metres.
_RIGS: dict[
    str, tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
] = {
    "front": ((0.0, -0.95, 0.6), (0.0, 0.0, 0.12), (0.0, 0.0, 1.0)),
    "side": ((0.95, 0.0, 0.6), (0.0, 0.0, 0.12), (0.0, 0.0, 1.0)),
    "overhead": ((0.0, 0.0, 1.25), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}
WRIST_CAMERA_POS = (0.0, -0.05, 0.06)  # in the gripper frame
WRIST_CAMERA_FORWARD = (0.0, 0.35, -1.0)  # looks down and slightly ahead, towards the fingertips
WRIST_FOVY_DEG = 70.0


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a scene; the same config and seed always build the same scene."""

    seed: int = 0
    n_objects: int = 3
    objects: tuple[str, ...] = ()  # explicit "<colour> <shape>" names; overrides n_objects when given
    width: int = 320
    height: int = 240
    cameras: tuple[str, ...] = CAMERA_NAMES
    shadows: bool = False
    randomize: bool = True
    object_size_m: float = 0.025  # nominal half extent (cube), radius (cylinder, sphere)
    size_jitter: float = 0.3  # relative spread of object sizes when randomised
    camera_jitter_m: float = 0.02  # spread of fixed camera eye and target when randomised
    fovy_deg: float = 45.0
    timestep_s: float = 0.002
    gripper_start: tuple[float, float, float] = (0.0, 0.0, 0.25)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)  # off: the plain look

    def __post_init__(self) -> None:
        if isinstance(self.appearance, Mapping):  # a saved episode's JSON: read through the config schema
            object.__setattr__(self, "appearance", from_dict(AppearanceConfig, self.appearance))
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "gripper_start", tuple(float(v) for v in self.gripper_start))
        n = len(self.objects) or self.n_objects
        if not 1 <= n <= MAX_OBJECTS:
            raise SceneConfigError(f"n_objects must be 1..{MAX_OBJECTS}, got {n}")
        for name in self.objects:
            parse_object_name(name)
        if len(set(self.objects)) != len(self.objects):
            raise SceneConfigError(f"object names must be unique, got {list(self.objects)}")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise SceneConfigError(f"image size must be 16..4096 px, got {self.width}x{self.height}")
        if not self.cameras:
            raise SceneConfigError("at least one camera is needed")
        for cam in self.cameras:
            if cam not in CAMERA_NAMES:
                raise UnknownCameraError(f"unknown camera {cam!r}; known: {', '.join(CAMERA_NAMES)}")
        if not 0.005 <= self.object_size_m <= 0.045:
            raise SceneConfigError(f"object_size_m must be 0.005..0.045 m, got {self.object_size_m}")
        if not 0.0 <= self.size_jitter < 0.9:
            raise SceneConfigError(f"size_jitter must be in [0, 0.9), got {self.size_jitter}")
        if not 0.0 <= self.camera_jitter_m <= 0.2:
            raise SceneConfigError(f"camera_jitter_m must be in [0, 0.2] m, got {self.camera_jitter_m}")
        if not 10.0 <= self.fovy_deg <= 120.0:
            raise SceneConfigError(f"fovy_deg must be 10..120, got {self.fovy_deg}")
        if not 0.0 < self.timestep_s <= 0.01:
            raise SceneConfigError(f"timestep_s must be in (0, 0.01], got {self.timestep_s}")
        check_reachable(self.gripper_start, what="gripper_start")


@dataclass(frozen=True)
class ObjectSpec:
    """One object: its name ("red cube"), shape, colour, sizes (m) and resting pose on the table."""

    name: str
    shape: str
    colour: str
    rgb: tuple[float, float, float]
    size_m: float  # half extent (cube) or radius (cylinder, sphere)
    half_height_m: float  # centre height when resting on the table
    xy: tuple[float, float]
    yaw_rad: float
    body: str  # MJCF body/geom name

    @property
    def seg_id(self) -> int:
        """Segmentation id of this object (index in the scene + OBJECT_ID_BASE)."""
        return OBJECT_ID_BASE + int(self.body.split("_")[1])

    def surface_points(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` points on the object's surface in its body frame (for point tracks)."""
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        if self.shape == "sphere":
            return d * self.size_m
        if self.shape == "cube":
            return d / np.abs(d).max(axis=1, keepdims=True) * self.size_m
        radial = np.linalg.norm(d[:, :2], axis=1, keepdims=True)  # cylinder: side or cap, whichever first
        scale = np.minimum(self.size_m / np.maximum(radial, 1e-9), self.half_height_m / np.abs(d[:, 2:3]))
        return d * scale

    def surface_normals(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals (body frame) at surface points given in the body frame."""
        p = np.asarray(points, float)
        if self.shape == "sphere":
            return p / np.linalg.norm(p, axis=-1, keepdims=True)
        if self.shape == "cube":
            axis = np.abs(p).argmax(axis=-1)
        else:  # cylinder: a cap point sits at |z| = half height, a side point at radius = size
            cap = np.abs(p[..., 2]) / self.half_height_m >= np.linalg.norm(p[..., :2], axis=-1) / self.size_m
            n = np.where(cap[..., None], [0.0, 0.0, 1.0] * np.sign(p), p * [1.0, 1.0, 0.0])
            return n / np.linalg.norm(n, axis=-1, keepdims=True)
        n = np.zeros_like(p)
        np.put_along_axis(
            n, axis[..., None], np.sign(np.take_along_axis(p, axis[..., None], axis=-1)), axis=-1
        )
        return n


@dataclass(frozen=True)
class CameraSpec:
    """A camera's mounting: world (fixed, movable by camera motions) or gripper (wrist)."""

    name: str
    mount: str  # "world" or "gripper"
    pos: tuple[float, float, float]  # in the mount's frame
    rotation: np.ndarray = field(compare=False)  # R_mount_optical (x right, y down, z forward)
    fovy_deg: float = 45.0


@dataclass(frozen=True)
class Scene:
    """A built scene: its objects, cameras, lights, the MJCF text MuJoCo loads and its texture files."""

    config: SceneConfig
    objects: tuple[ObjectSpec, ...]
    cameras: dict[str, CameraSpec]
    xml: str
    assets: dict[str, bytes] = field(default_factory=dict, compare=False)  # photo textures the MJCF names
    sensor: SensorEffects = SensorEffects()  # what the cameras do to each rendered image

    def object(self, name: str) -> ObjectSpec:
        """Return the object called `name`; UnknownObjectError lists the scene's objects otherwise."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise UnknownObjectError(f"no object {name!r} in the scene; it has: {', '.join(self.object_names)}")

    @property
    def object_names(self) -> tuple[str, ...]:
        """Names of the scene's objects in scene order."""
        return tuple(o.name for o in self.objects)

    @property
    def seg_ids(self) -> dict[str, int]:
        """Segmentation id of every entity: table, gripper and each object by name."""
        ids = {"table": TABLE_ID, "gripper": GRIPPER_ID}
        ids.update({o.name: o.seg_id for o in self.objects})
        return ids


def parse_object_name(name: str) -> tuple[str, str]:
    """Split "red cube" into (colour, shape); UnknownObjectError names the vocabulary otherwise."""
    parts = name.strip().lower().split()
    if len(parts) != 2 or parts[0] not in COLOURS or parts[1] not in SHAPES:
        raise UnknownObjectError(
            f"unknown object {name!r}: expected '<colour> <shape>' with colour in {sorted(COLOURS)} "
            f"and shape in {list(SHAPES)}"
        )
    return parts[0], parts[1]


def check_reachable(pos: tuple[float, float, float] | np.ndarray, what: str = "target") -> None:
    """Raise UnreachableTargetError when a gripper position is outside the workspace box."""
    p = np.asarray(pos, float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise UnreachableTargetError(f"{what} must be 3 finite numbers, got {pos!r}")
    lo, hi = np.array(WORKSPACE_MIN), np.array(WORKSPACE_MAX)
    if np.any(p < lo - 1e-9) or np.any(p > hi + 1e-9):
        raise UnreachableTargetError(
            f"{what} {np.round(p, 3).tolist()} m is outside the gripper workspace "
            f"x[{lo[0]}, {hi[0]}] y[{lo[1]}, {hi[1]}] z[{lo[2]}, {hi[2]}]"
        )


def _choose_objects(config: SceneConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    if config.objects:
        return [parse_object_name(n) for n in config.objects]
    if not config.randomize:
        default = [
            ("red", "cube"),
            ("blue", "cylinder"),
            ("green", "sphere"),
            ("yellow", "cube"),
            ("orange", "cylinder"),
            ("purple", "sphere"),
        ]
        return default[: config.n_objects]
    colours = rng.choice(list(COLOURS), size=config.n_objects, replace=False)
    return [(str(c), str(rng.choice(SHAPES))) for c in colours]


def _place(sizes: list[float], randomize: bool, rng: np.random.Generator) -> list[tuple[float, float]]:
    if not randomize:
        grid = [(-0.15, 0.08), (0.15, 0.08), (0.0, 0.18), (-0.15, -0.12), (0.15, -0.12), (0.0, -0.18)]
        return grid[: len(sizes)]
    placed: list[tuple[float, float]] = []
    for size in sizes:
        for _ in range(500):
            xy = (
                float(rng.uniform(-PLACEMENT_HALF[0], PLACEMENT_HALF[0])),
                float(rng.uniform(-PLACEMENT_HALF[1], PLACEMENT_HALF[1])),
            )
            if all(
                np.hypot(xy[0] - q[0], xy[1] - q[1]) > 1.5 * (size + s) + 0.03 for q, s in zip(placed, sizes)
            ):
                break
        else:  # unreachable with <= 6 objects of <= 4.5 cm in a 44x40 cm area, kept as a guard
            raise SceneConfigError("could not place the objects without overlap: use fewer or smaller")
        placed.append(xy)
    return placed


def _objects(config: SceneConfig, rng: np.random.Generator) -> tuple[ObjectSpec, ...]:
    kinds = _choose_objects(config, rng)
    jitter = config.size_jitter if config.randomize else 0.0
    sizes = [config.object_size_m * float(rng.uniform(1 - jitter, 1 + jitter)) for _ in kinds]
    places = _place(sizes, config.randomize, rng)
    look = config.appearance
    shades = stream(config.seed, "objects") if look.randomize and look.object_shade > 0 else None
    specs = []
    for i, ((colour, shape), size, xy) in enumerate(zip(kinds, sizes, places)):
        rgb = np.array(COLOURS[colour])
        if config.randomize:  # shade jitter keeps the colour's name true
            rgb = np.clip(rgb * rng.uniform(0.85, 1.1) + rng.uniform(-0.04, 0.04, 3), 0.0, 1.0)
        if shades is not None:
            rgb = np.array(shade(colour, tuple(rgb), look.object_shade, shades))
        half_height = (
            size * float(rng.uniform(0.8, 1.6)) if shape == "cylinder" and config.randomize else size
        )
        yaw = float(rng.uniform(-np.pi, np.pi)) if config.randomize and shape != "sphere" else 0.0
        specs.append(
            ObjectSpec(
                f"{colour} {shape}",
                shape,
                colour,
                tuple(float(c) for c in rgb),
                size,
                half_height,
                xy,
                yaw,
                f"obj_{i}",
            )
        )
    return tuple(specs)


def _cameras(config: SceneConfig, rng: np.random.Generator) -> dict[str, CameraSpec]:
    cams: dict[str, CameraSpec] = {}
    jitter = config.camera_jitter_m if config.randomize else 0.0
    for name in config.cameras:
        if name == "wrist":
            forward = np.array(WRIST_CAMERA_FORWARD) / np.linalg.norm(WRIST_CAMERA_FORWARD)
            right = np.array([1.0, 0.0, 0.0])
            rot = np.stack([right, np.cross(forward, right), forward], axis=1)
            cams[name] = CameraSpec(name, "gripper", WRIST_CAMERA_POS, rot, WRIST_FOVY_DEG)
            continue
        eye, target, up = (np.array(v) for v in _RIGS[name])
        eye = eye + rng.uniform(-jitter, jitter, 3)
        target = target + rng.uniform(-jitter, jitter, 3)
        cams[name] = CameraSpec(
            name, "world", tuple(float(v) for v in eye), look_at(eye, target, up), config.fovy_deg
        )
    for name, j in camera_jitters(config.appearance, config.seed, CAMERA_NAMES).items():
        if name in cams:
            c = cams[name]
            pos = tuple(float(v) for v in np.add(c.pos, j.shift))
            fovy = float(np.clip(c.fovy_deg + j.fovy_deg, 10.0, 120.0))
            cams[name] = CameraSpec(name, c.mount, pos, c.rotation @ j.rotation, fovy)
    return cams


def _fmt(values: np.ndarray | tuple | list) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _camera_xml(cam: CameraSpec) -> str:
    mj = cam.rotation @ MUJOCO_TO_OPTICAL  # columns: MuJoCo camera x (right) and y (up)
    return (
        f'<camera name="{cam.name}" pos="{_fmt(cam.pos)}" xyaxes="{_fmt(mj[:, 0])} {_fmt(mj[:, 1])}" '
        f'fovy="{cam.fovy_deg:.6g}"/>'
    )


def _object_xml(obj: ObjectSpec) -> str:
    size = {"cube": [obj.size_m] * 3, "cylinder": [obj.size_m, obj.half_height_m], "sphere": [obj.size_m]}
    mj_type = {"cube": "box", "cylinder": "cylinder", "sphere": "sphere"}[obj.shape]
    pos = (*obj.xy, obj.half_height_m + 0.001)
    return (
        f'<body name="{obj.body}" pos="{_fmt(pos)}" euler="0 0 {obj.yaw_rad:.6g}">'
        f'<freejoint name="{obj.body}"/>'
        f'<geom name="{obj.body}" type="{mj_type}" size="{_fmt(size[obj.shape])}" rgba="{_fmt(obj.rgb)} 1" '
        f'density="600" friction="1 0.01 0.001" condim="4"/></body>'
    )


def _gripper_xml(config: SceneConfig, cameras: dict[str, CameraSpec]) -> str:
    fx, fy, fz = FINGER_HALF
    reach = GRIPPER_MAX_OPENING / 2
    fingers = []
    for side, sign in (("left", -1.0), ("right", 1.0)):
        fingers.append(
            f'<body name="finger_{side}" pos="{sign * (reach + fx):.6g} 0 0">'
            f'<joint name="finger_{side}" type="slide" axis="{-sign:.1g} 0 0" range="0 {reach:.6g}" '
            f'damping="5"/>'
            f'<geom name="finger_{side}" type="box" size="{fx} {fy} {fz}" pos="0 0 {fz - 0.02:.6g}" '
            f'rgba="0.25 0.25 0.28 1" contype="2" conaffinity="1" friction="1.5 0.01 0.001"/></body>'
        )
    wrist = cameras.get("wrist")
    return (
        f'<body name="gripper" mocap="true" pos="{_fmt(config.gripper_start)}">'
        f'<geom name="gripper_wrist" type="box" size="{reach + 2 * fx + 0.005:.6g} 0.022 0.02" '
        f'pos="0 0 0.08" '
        f'rgba="0.55 0.57 0.6 1" contype="2" conaffinity="1"/>'
        f'<geom name="gripper_arm" type="cylinder" fromto="0 0 0.1 0 0 0.5" size="0.018" '
        f'rgba="0.85 0.86 0.88 1" contype="2" conaffinity="1"/>'
        + (_camera_xml(wrist) if wrist else "")
        + "".join(fingers)
        + "</body>"
    )


def _plain_look(config: SceneConfig, rng: np.random.Generator) -> Look:
    """Draw the look without appearance randomisation (table colour and lights vary with the layout)."""
    r = config.randomize
    builtin = str(rng.choice(["checker", "flat", "gradient"])) if r else "flat"
    wood = np.array([0.62, 0.48, 0.33])
    table1 = np.clip(wood + (rng.uniform(-0.2, 0.2, 3) if r else 0), 0, 1)
    table2 = np.clip(table1 * (rng.uniform(0.7, 0.95) if r else 0.85), 0, 1)
    floor = np.clip(np.array([0.35, 0.37, 0.4]) + (rng.uniform(-0.15, 0.15, 3) if r else 0), 0, 1)
    key_dir = np.array([0.3, 0.2, -1.0]) + (rng.uniform(-0.35, 0.35, 3) * [1, 1, 0] if r else 0)
    key = rng.uniform(0.45, 0.8) if r else 0.6
    fill = rng.uniform(0.15, 0.35) if r else 0.25
    ambient = rng.uniform(0.2, 0.4) if r else 0.3
    return Look(
        table=Surface(as_rgb(table1), as_rgb(table2), builtin),
        floor=Surface(as_rgb(floor), as_rgb(floor * 0.8), "checker", (8.0, 8.0)),
        sky=((0.75, 0.8, 0.88), (0.35, 0.38, 0.45)),
        walls=None,
        lights=(
            Light("key", (0.0, 0.0, 3.0), as_rgb(key_dir), (key,) * 3, (0.2,) * 3, True, config.shadows),
            Light("fill", (-1.0, -1.0, 2.0), (1.0, 1.0, -2.0), (fill,) * 3, (0.0,) * 3),
        ),
        ambient=(ambient,) * 3,
        headlight=(0.35,) * 3,
        shadow_map=2048,
    )


def _fmt3(values: tuple[float, ...]) -> str:
    return " ".join(f"{float(v):.3g}" for v in values)


def _surface_xml(name: str, surface: Surface, assets: dict[str, bytes]) -> str:
    """Write a 2D texture and its material (a photo becomes a PNG asset)."""
    s = surface
    if s.photo is not None:
        assets[f"{name}.png"] = png_bytes(s.photo)
        texture = f'<texture name="{name}_tex" type="2d" file="{name}.png"/>'
    else:
        speckle = f' mark="random" random="{s.speckle:.3g}" markrgb="{_fmt(s.rgb2)}"' if s.speckle else ""
        texture = (
            f'<texture name="{name}_tex" type="2d" builtin="{s.builtin}" rgb1="{_fmt(s.rgb1)}" '
            f'rgb2="{_fmt(s.rgb2)}"{speckle} width="256" height="256"/>'
        )
    gloss = "".join(
        f' {key}="{value:.3g}"' for key, value in (("specular", s.specular), ("shininess", s.shininess))
        if value is not None
    )
    material = f'<material name="{name}_mat" texture="{name}_tex" texrepeat="{_fmt(s.texrepeat)}"{gloss}/>'
    return texture + material


def _light_xml(light: Light) -> str:
    spot = f' cutoff="{light.cutoff_deg:.3g}"' if light.cutoff_deg is not None else ""
    directional = ' directional="true"' if light.directional else ""
    return (
        f'<light name="{light.name}"{directional} '
        f'pos="{_fmt(light.pos)}" dir="{_fmt(light.dir)}" diffuse="{_fmt3(light.diffuse)}" '
        f'specular="{_fmt(light.specular)}" castshadow="{"true" if light.castshadow else "false"}"{spot}/>'
    )


def _walls_xml() -> str:
    """Four walls 2.5 m from the table centre, floor to 2.5 m high, facing in (seen as background)."""
    half_h = (2.5 + TABLE_LEG_HEIGHT + 0.02) / 2
    z = 2.5 - half_h
    sides = {"north": ((0, 2.5), "0 -1 0"), "south": ((0, -2.5), "0 1 0"), "east": ((2.5, 0), "-1 0 0"),
             "west": ((-2.5, 0), "1 0 0")}
    return "".join(
        f'<geom name="backdrop_{side}" type="plane" pos="{x} {y} {z:.6g}" zaxis="{normal}" '
        f'size="2.5 {half_h:.6g} 0.1" material="walls_mat" contype="0" conaffinity="0"/>'
        for side, ((x, y), normal) in sides.items()
    )


def _look_xml(look: Look) -> tuple[str, str, str, dict[str, bytes]]:
    """Visual settings, assets, lights and backdrop geoms of a look, and the texture files they name."""
    files: dict[str, bytes] = {}
    visual = (
        f'<quality shadowsize="{look.shadow_map}"/><map znear="0.01" zfar="50"/>'
        f'<headlight ambient="{_fmt3(look.ambient)}" diffuse="{_fmt3(look.headlight)}" '
        f'specular="0.05 0.05 0.05"/>'
    )
    assets = (
        _surface_xml("table", look.table, files)
        + _surface_xml("floor", look.floor, files)
        + (_surface_xml("walls", look.walls, files) if look.walls else "")
        + f'<texture name="sky" type="skybox" builtin="gradient" rgb1="{_fmt(look.sky[0])}" '
        f'rgb2="{_fmt(look.sky[1])}" width="64" height="64"/>'
    )
    lights = "".join(_light_xml(light) for light in look.lights)
    return visual, assets, lights + (_walls_xml() if look.walls else ""), files


def _table_xml() -> str:
    hx, hy = TABLE_HALF
    legs = "".join(
        f'<geom name="table_leg{i}" type="box" size="0.025 0.025 {TABLE_LEG_HEIGHT / 2:.6g}" '
        f'pos="{sx * (hx - 0.05):.6g} {sy * (hy - 0.05):.6g} {-TABLE_LEG_HEIGHT / 2 - 0.02:.6g}" '
        f'material="table_mat"/>'
        for i, (sx, sy) in enumerate(((-1, -1), (-1, 1), (1, -1), (1, 1)))
    )
    return (
        f'<body name="table"><geom name="table_top" type="box" size="{hx} {hy} 0.02" pos="0 0 -0.02" '
        f'material="table_mat" friction="1 0.01 0.001"/>{legs}</body>'
    )


def build_scene(config: SceneConfig) -> Scene:
    """Randomise (by config.seed) and build the scene's MJCF; the same config gives the same scene."""
    rng = np.random.default_rng(config.seed)
    objects = _objects(config, rng)
    cameras = _cameras(config, rng)
    look = randomize_look(config.appearance, config.seed, _plain_look(config, rng))
    visual, assets, lights, files = _look_xml(look)
    world_cams = "".join(_camera_xml(c) for c in cameras.values() if c.mount == "world")
    xml = (
        '<mujoco model="spatial_mllm_tabletop">'
        f'<option timestep="{config.timestep_s:.6g}" gravity="0 0 -9.81" cone="elliptic"/>'
        '<statistic extent="1" center="0 0 0.1"/>'
        f'<visual><global offwidth="{config.width}" offheight="{config.height}"/>{visual}</visual>'
        f"<asset>{assets}</asset>"
        f"<worldbody>{lights}"
        f'<geom name="floor" type="plane" pos="0 0 {-TABLE_LEG_HEIGHT - 0.02:.6g}" size="4 4 0.1" '
        f'material="floor_mat"/>'
        f"{_table_xml()}{world_cams}{_gripper_xml(config, cameras)}"
        + "".join(_object_xml(o) for o in objects)
        + "</worldbody></mujoco>"
    )
    return Scene(config, objects, cameras, xml, files, look.sensor)
