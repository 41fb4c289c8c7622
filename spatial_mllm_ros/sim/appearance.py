"""Appearance randomisation: lights, surfaces, object shades, camera optics and sensor effects, by seed.

Off (the default) a scene looks exactly as it did before this existed. On, each group draws from its own
random stream of the scene seed: the objects, their placement and the other groups' draws stay the same
when one group is switched on or off, so two profiles of one seed differ only in what the profile changes.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatial_mllm_ros.config import option
from spatial_mllm_ros.sim.errors import SceneConfigError
from spatial_mllm_ros.sim.geometry import axis_angle
from spatial_mllm_ros.sim.photos import photo_texture
from spatial_mllm_ros.sim.sensor import SensorEffects

RGB = tuple[float, float, float]

APPEARANCE_STREAM = 0xA99  # seeds the appearance streams apart from the scene's layout stream
GROUPS = ("lights", "surfaces", "objects", "camera", "sensor")
RANDOM_SHADOW_MAP = 1024  # px; half the plain scene's 2048, which costs 3x a shadowless frame on CPU
WRIST_SHIFT_SCALE = 0.3  # the wrist camera's mount moves a third as far (it sits 2 cm from the wrist block)

# Hue bands (degrees) each chromatic colour name covers; shades stay inside them, and at saturation and
# value of at least CHROMA_MIN. "white" is any hue at saturation <= WHITE_MAX_SAT and value >= WHITE_MIN_VAL.
COLOUR_BANDS: dict[str, tuple[float, float]] = {
    "red": (-12.0, 12.0),
    "orange": (18.0, 40.0),
    "yellow": (44.0, 64.0),
    "green": (105.0, 155.0),
    "cyan": (170.0, 198.0),
    "blue": (212.0, 248.0),
    "purple": (262.0, 300.0),
}
CHROMA_MIN = 0.4
WHITE_MAX_SAT, WHITE_MIN_VAL = 0.15, 0.7
HUE_SPREAD_DEG = 8.0


def _check(group: Any) -> None:
    """Turn lists into tuples and raise SceneConfigError for values out of range or pairs out of order."""
    for f in dataclasses.fields(group):
        value = getattr(group, f.name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(group, f.name, value)
        items = value if isinstance(value, tuple) else (value,)
        lo, hi = f.metadata.get("range") or (None, None)
        if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in items):
            raise SceneConfigError(f"appearance {f.name} must be within [{lo}, {hi}], got {value}")
        if isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
            raise SceneConfigError(f"appearance {f.name} must be (lowest, highest), got {value}")


@dataclass(frozen=True)
class LightAppearance:
    """Lights: how many, where from, what colour and how bright; shadows."""

    share: float = option(1.0, help="share of scenes whose lights are drawn at random", range=(0.0, 1.0))
    count: tuple[int, int] = option(
        (1, 3), help="number of lights besides the camera's headlight: lowest, highest", range=(1, 4)
    )
    level: tuple[float, float] = option(
        (0.5, 1.4),
        help="light level relative to the plain scene (low: dim): lowest, highest",
        range=(0.05, 3.0),
    )
    tint: tuple[float, float] = option(
        (0.0, 0.35),
        help="saturation of the light's colour, any hue (0 white, warm or cool tints, 1 fully coloured)",
        range=(0.0, 1.0),
    )
    shadow_share: float = option(
        0.1, help="share of scenes whose key light casts shadows (about 2x slower on CPU)", range=(0.0, 1.0)
    )

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class SurfaceAppearance:
    """Table, floor and backdrop: colours, procedural textures and photographs."""

    share: float = option(
        1.0,
        help="share of scenes whose table, floor and backdrop colours are drawn at random",
        range=(0.0, 1.0),
    )
    texture_share: float = option(
        0.5,
        help="share of surfaces textured (checker, gradient, speckle or photo) instead of flat",
        range=(0.0, 1.0),
    )
    photo_share: float = option(
        0.3,
        help="share of textures cut from images matplotlib ships (a photo, a relief map)",
        range=(0.0, 1.0),
    )
    backdrop_share: float = option(
        0.5, help="share of scenes with walls around the table instead of the sky", range=(0.0, 1.0)
    )

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class CameraAppearance:
    """Camera optics and mounting: field of view and pose jitter (intrinsics and truth follow)."""

    share: float = option(1.0, help="share of scenes whose cameras are jittered", range=(0.0, 1.0))
    fovy_jitter_deg: float = option(
        5.0, help="largest change of the vertical field of view", range=(0.0, 20.0)
    )
    shift_m: float = option(
        0.03, help="largest shift of a camera along each axis (the wrist camera: 0.3x)", range=(0.0, 0.1)
    )
    tilt_deg: float = option(2.0, help="largest turn of a camera about a random axis", range=(0.0, 10.0))

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class SensorAppearance:
    """Image effects after rendering (blur, exposure, white balance, noise, JPEG), see sim/sensor.py."""

    share: float = option(0.5, help="share of scenes whose camera applies image effects", range=(0.0, 1.0))
    blur_sigma: tuple[float, float] = option(
        (0.0, 1.0), help="Gaussian blur sigma (px): lowest, highest", range=(0.0, 3.0)
    )
    exposure_stops: tuple[float, float] = option(
        (-0.5, 0.5), help="exposure change in stops (gain 2^x): lowest, highest", range=(-2.0, 2.0)
    )
    white_balance: float = option(
        0.1, help="largest white-balance error: red and blue gains within 1 +- this", range=(0.0, 0.5)
    )
    noise_std: tuple[float, float] = option(
        (0.0, 6.0), help="Gaussian noise std in 8-bit levels: lowest, highest", range=(0.0, 30.0)
    )
    jpeg_share: float = option(0.5, help="share of those scenes re-encoded as JPEG", range=(0.0, 1.0))
    jpeg_quality: tuple[int, int] = option((40, 90), help="JPEG quality: lowest, highest", range=(5, 100))

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class AppearanceConfig:
    """How a scene looks beyond its layout; randomize=False is the plain look every test and the demo use."""

    randomize: bool = option(
        False, help="draw the look from the scene seed (lights, surfaces, shades, optics, sensor); off: plain"
    )
    lights: LightAppearance = option(default_factory=LightAppearance)
    surfaces: SurfaceAppearance = option(default_factory=SurfaceAppearance)
    object_shade: float = option(
        1.0,
        help="spread of shades inside each named colour (hue, saturation, value; a red cube stays red)",
        range=(0.0, 1.0),
    )
    camera: CameraAppearance = option(default_factory=CameraAppearance)
    sensor: SensorAppearance = option(default_factory=SensorAppearance)

    def __post_init__(self) -> None:
        _check(self)

    def only(self, *groups: str) -> AppearanceConfig:
        """Return this config with every group but `groups` switched off (a one-change-at-a-time shift)."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise SceneConfigError(f"unknown appearance groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
        off = {g: dataclasses.replace(getattr(self, g), share=0.0) for g in GROUPS if g != "objects"}
        changes = {g: v for g, v in off.items() if g not in groups}
        if "objects" not in groups:
            changes["object_shade"] = 0.0
        return dataclasses.replace(self, randomize=True, **changes)


@dataclass(frozen=True)
class Light:
    """One MuJoCo light; a spot light when it is not directional."""

    name: str
    pos: tuple[float, float, float]
    dir: tuple[float, float, float]
    diffuse: RGB
    specular: RGB
    directional: bool = False
    castshadow: bool = False
    cutoff_deg: float | None = None  # spot cone half-angle; None: MuJoCo's default


@dataclass(frozen=True)
class Surface:
    """A textured material: MuJoCo builtin pattern of two colours, speckles, or a photograph."""

    rgb1: RGB
    rgb2: RGB
    builtin: str = "flat"  # flat, checker or gradient
    texrepeat: tuple[float, float] = (4.0, 4.0)
    speckle: float = 0.0  # share of pixels MuJoCo's random mark paints in rgb2 (0: none)
    photo: np.ndarray | None = field(default=None, compare=False)  # RGB uint8, replaces the pattern
    specular: float | None = None  # None: MuJoCo's default material
    shininess: float | None = None


@dataclass(frozen=True)
class Look:
    """Everything about how a scene looks, as concrete values the MJCF and the renderer take."""

    table: Surface
    floor: Surface
    sky: tuple[RGB, RGB]
    walls: Surface | None
    lights: tuple[Light, ...]
    ambient: RGB
    headlight: RGB
    shadow_map: int
    sensor: SensorEffects = SensorEffects()


@dataclass(frozen=True)
class CameraJitter:
    """A camera's drawn optics: shift (m, mount frame), turn (optical frame) and added field of view."""

    shift: tuple[float, float, float]
    rotation: np.ndarray = field(compare=False)
    fovy_deg: float


def stream_seed(seed: int, group: str) -> list[int]:
    """Return the seed of one appearance group's random stream (or "sensor_frames") for a scene seed."""
    return [APPEARANCE_STREAM, seed, (*GROUPS, "sensor_frames").index(group)]


def stream(seed: int, group: str) -> np.random.Generator:
    """Return the random stream of one appearance group of a scene seed."""
    return np.random.default_rng(stream_seed(seed, group))


def as_rgb(values: Iterable[float]) -> RGB:
    """Three floats as a plain tuple (MJCF text and frozen dataclasses take no arrays)."""
    r, g, b = (float(v) for v in values)
    return (r, g, b)


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> RGB:
    return as_rgb(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)))


def _tint(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """Light colour of mean 1 (brightness stays with the level), any hue at this saturation."""
    rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), saturation, 1.0))
    return np.minimum(rgb / rgb.mean(), 2.5)


def _lights(cfg: LightAppearance, rng: np.random.Generator) -> tuple[tuple[Light, ...], RGB, RGB, bool]:
    """Key light (directional) plus spot lights; level and tint scale them and the ambient light alike."""
    level = rng.uniform(*cfg.level)
    tint = _tint(rng, rng.uniform(*cfg.tint))
    shadows = bool(rng.random() < cfg.shadow_share)
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
    weights = np.sort(rng.dirichlet(np.ones(n)))[::-1]  # the key light is the strongest
    lights = []
    for i, weight in enumerate(weights):
        azimuth, elevation = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(30, 85))
        towards = -np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                             np.sin(elevation)])
        diffuse = as_rgb(0.85 * level * weight * tint * rng.uniform(0.9, 1.1, 3))  # 0.85: plain key + fill
        specular = as_rgb([rng.uniform(0.0, 0.3)] * 3)
        if i == 0:
            lights.append(Light("key", (0.0, 0.0, 3.0), as_rgb(towards), diffuse, specular, True, shadows))
        else:
            pos, cutoff = as_rgb(-towards * rng.uniform(1.5, 2.5)), float(rng.uniform(40, 80))
            lights.append(Light(f"spot{i}", pos, as_rgb(towards), diffuse, specular, cutoff_deg=cutoff))
    ambient = as_rgb(0.3 * level * rng.uniform(0.5, 1.3) * tint)
    headlight = as_rgb(0.35 * level * rng.uniform(0.5, 1.2) * tint)
    return tuple(lights), ambient, headlight, shadows


def _surface(cfg: SurfaceAppearance, rng: np.random.Generator, repeat: tuple[float, float]) -> Surface:
    """Draw a flat colour, a two-colour pattern, speckles or a photograph, with random gloss."""
    rgb1 = _colour(rng, (0.0, 0.5), (0.2, 0.9))
    texrepeat = (float(rng.uniform(*repeat)),) * 2
    gloss = {"specular": float(rng.uniform(0.0, 0.6)), "shininess": float(rng.uniform(0.0, 0.8))}
    if rng.random() >= cfg.texture_share:
        return Surface(rgb1, rgb1, texrepeat=texrepeat, **gloss)
    if rng.random() < cfg.photo_share:
        return Surface(rgb1, rgb1, texrepeat=(1.0, 1.0), photo=photo_texture(rng), **gloss)
    darker = as_rgb(np.array(rgb1) * rng.uniform(0.5, 0.9))
    rgb2 = _colour(rng, (0.0, 0.6), (0.1, 1.0)) if rng.random() < 0.3 else darker
    kind = str(rng.choice(["checker", "gradient", "speckle"]))
    if kind == "speckle":
        return Surface(rgb1, rgb2, texrepeat=texrepeat, speckle=float(rng.uniform(0.05, 0.4)), **gloss)
    return Surface(rgb1, rgb2, kind, texrepeat, **gloss)


def randomize_look(config: AppearanceConfig, seed: int, plain: Look) -> Look:
    """Return the look of scene `seed`: `plain` with each group `config` draws for this seed replaced."""
    if not config.randomize:
        return plain
    look = plain
    rng = stream(seed, "lights")
    if rng.random() < config.lights.share:
        lights, ambient, headlight, shadows = _lights(config.lights, rng)
        look = dataclasses.replace(
            look, lights=lights, ambient=ambient, headlight=headlight,
            shadow_map=RANDOM_SHADOW_MAP if shadows else look.shadow_map,
        )
    rng = stream(seed, "surfaces")
    if rng.random() < config.surfaces.share:
        cfg = config.surfaces
        walls = _surface(cfg, rng, (1.0, 4.0)) if rng.random() < cfg.backdrop_share else None
        sky = (_colour(rng, (0.0, 0.4), (0.5, 1.0)), _colour(rng, (0.0, 0.4), (0.1, 0.6)))
        look = dataclasses.replace(
            look, table=_surface(cfg, rng, (1.0, 6.0)), floor=_surface(cfg, rng, (2.0, 12.0)), sky=sky,
            walls=walls,
        )
    rng = stream(seed, "sensor")
    if rng.random() < config.sensor.share:
        look = dataclasses.replace(look, sensor=_sensor(config.sensor, rng))
    return look


def _sensor(cfg: SensorAppearance, rng: np.random.Generator) -> SensorEffects:
    red, blue = 1.0 + rng.uniform(-cfg.white_balance, cfg.white_balance, 2)
    lo, hi = cfg.jpeg_quality
    jpeg = int(rng.integers(lo, hi + 1)) if rng.random() < cfg.jpeg_share else 0
    return SensorEffects(
        blur_sigma=float(rng.uniform(*cfg.blur_sigma)),
        exposure=float(2.0 ** rng.uniform(*cfg.exposure_stops)),
        white_balance=(float(red), 1.0, float(blue)),
        noise_std=float(rng.uniform(*cfg.noise_std)),
        jpeg_quality=jpeg,
    )


def camera_jitters(config: AppearanceConfig, seed: int, cameras: Iterable[str]) -> dict[str, CameraJitter]:
    """Draw each camera's optics; all `cameras` in order, so no draw depends on the scene's other cameras."""
    rng = stream(seed, "camera")
    cfg = config.camera
    if not config.randomize or rng.random() >= cfg.share:
        return {}
    jitters = {}
    for name in cameras:
        shift = rng.uniform(-cfg.shift_m, cfg.shift_m, 3) * (WRIST_SHIFT_SCALE if name == "wrist" else 1.0)
        turn = axis_angle(rng.normal(size=3), np.radians(rng.uniform(0.0, cfg.tilt_deg)))
        jitters[name] = CameraJitter(as_rgb(shift), turn, float(rng.uniform(-1, 1) * cfg.fovy_jitter_deg))
    return jitters


def shade(colour: str, rgb: RGB, spread: float, rng: np.random.Generator) -> RGB:
    """Return a shade of a named colour: hue, saturation and value jittered inside the name's band."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if colour not in COLOUR_BANDS:  # white: a faint tint of any hue, a little darker at most
        s = min(s + rng.uniform(0.0, 0.08) * spread, WHITE_MAX_SAT)
        v = max(v * rng.uniform(1 - 0.2 * spread, 1), WHITE_MIN_VAL)
        return as_rgb(colorsys.hsv_to_rgb(rng.uniform(0, 1), s, v))
    lo, hi = COLOUR_BANDS[colour]
    hue = (h * 360 + 180) % 360 - 180 if lo < 0 else h * 360  # red's band wraps around 0
    hue = np.clip(hue + rng.uniform(-1, 1) * spread * HUE_SPREAD_DEG, lo + 1, hi - 1)
    s = np.clip(s * rng.uniform(1 - 0.3 * spread, 1 + 0.1 * spread), CHROMA_MIN + 0.1, 1.0)
    v = np.clip(v * rng.uniform(1 - 0.35 * spread, 1 + 0.1 * spread), CHROMA_MIN + 0.05, 1.0)
    return as_rgb(colorsys.hsv_to_rgb((hue % 360) / 360, s, v))


def in_band(colour: str, rgb: RGB) -> bool:
    """Whether `rgb` is still recognisably `colour` (inside its hue band, saturation and value limits)."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if colour not in COLOUR_BANDS:
        return s <= WHITE_MAX_SAT and v >= WHITE_MIN_VAL
    lo, hi = COLOUR_BANDS[colour]
    hue = (h * 360 + 180) % 360 - 180 if lo < 0 else h * 360
    return lo <= hue <= hi and s >= CHROMA_MIN and v >= CHROMA_MIN
