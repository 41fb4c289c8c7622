"""Named appearance shifts: one definition for the shift benchmark and the training recipe.

Each profile changes one thing a real camera changes (light, surfaces, shades, optics, the wrist camera,
sensor effects) against the plain scene; "randomized" changes all of them at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spatial_mllm_ros.sim.appearance import (
    AppearanceConfig,
    CameraAppearance,
    LightAppearance,
    SensorAppearance,
    SurfaceAppearance,
)
from spatial_mllm_ros.sim.errors import SceneConfigError
from spatial_mllm_ros.sim.scene import SceneConfig


@dataclass(frozen=True)
class ShiftProfile:
    """A named look: an appearance config plus the scene fields it changes (shadows, cameras)."""

    name: str
    description: str
    appearance: AppearanceConfig = AppearanceConfig()
    scene: Mapping[str, Any] = field(default_factory=dict)

    def scene_config(self, seed: int, base: SceneConfig | None = None) -> SceneConfig:
        """Return the scene config of this profile for `seed` (the rest from `base` or the defaults)."""
        base = base or SceneConfig()
        return dataclasses.replace(base, seed=seed, appearance=self.appearance, **self.scene)


def _profiles(*profiles: ShiftProfile) -> dict[str, ShiftProfile]:
    return {p.name: p for p in profiles}


def _only(group: str, **settings: Any) -> AppearanceConfig:
    """Randomise one group (with these settings), keep the others plain."""
    return AppearanceConfig(randomize=True, **settings).only(group)


PROFILES: dict[str, ShiftProfile] = _profiles(
    ShiftProfile("in_distribution", "the plain look the shipped model trained on"),
    ShiftProfile(
        "randomized",
        "lights, surfaces, shades, optics and sensor all drawn, at the default spreads",
        AppearanceConfig(randomize=True),
    ),
    ShiftProfile("shadows", "the plain lights, the key light casting shadows", scene={"shadows": True}),
    ShiftProfile(
        "dim_light",
        "0.2-0.5x the plain light level, near-white",
        _only("lights", lights=LightAppearance(level=(0.2, 0.5), tint=(0.0, 0.1), shadow_share=0.0)),
    ),
    ShiftProfile(
        "coloured_light",
        "lights tinted warm, cool or any hue (saturation 0.35-0.8)",
        _only("lights", lights=LightAppearance(level=(0.7, 1.2), tint=(0.35, 0.8), shadow_share=0.0)),
    ),
    ShiftProfile(
        "surface_colours",
        "table, floor and backdrop in random flat colours",
        _only("surfaces", surfaces=SurfaceAppearance(texture_share=0.0)),
    ),
    ShiftProfile(
        "textures",
        "table, floor and walls textured: checker, gradient, speckle or photographs",
        _only("surfaces", surfaces=SurfaceAppearance(texture_share=1.0, photo_share=0.4, backdrop_share=1.0)),
    ),
    ShiftProfile("object_shades", "each object a different shade of its named colour", _only("objects")),
    ShiftProfile(
        "camera_optics",
        "field of view +-8 deg, cameras shifted up to 4 cm and turned up to 3 deg",
        _only("camera", camera=CameraAppearance(fovy_jitter_deg=8.0, shift_m=0.04, tilt_deg=3.0)),
    ),
    ShiftProfile("wrist_camera", "questions about the gripper-mounted camera", scene={"cameras": ("wrist",)}),
    ShiftProfile(
        "sensor_noise_jpeg",
        "noise 3-10 levels, slight blur, JPEG quality 25-60",
        _only(
            "sensor",
            sensor=SensorAppearance(
                share=1.0, blur_sigma=(0.0, 0.6), exposure_stops=(0.0, 0.0), white_balance=0.0,
                noise_std=(3.0, 10.0), jpeg_share=1.0, jpeg_quality=(25, 60),
            ),
        ),
    ),
)


def shift_profile(name: str) -> ShiftProfile:
    """Return the profile called `name`; SceneConfigError lists the known ones otherwise."""
    if name not in PROFILES:
        raise SceneConfigError(f"unknown appearance profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]
