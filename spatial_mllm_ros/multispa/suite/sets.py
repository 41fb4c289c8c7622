"""The shift suite's sets: what each changes against in_distribution, and the unseen seeds it draws.

Every set changes one thing a real camera or task changes, so a drop on it names its cause. Sets are
numbered by their place in the suite and each draws its scenes from its own seed range, apart from the
recipe's training and held-out scenes and from every other set's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from spatial_mllm_ros.multispa.benchmark import SIM_HELD_OUT_FIRST_SEED
from spatial_mllm_ros.multispa.suite.errors import SuiteError
from spatial_mllm_ros.multispa.train.simdata import EpisodeSpec
from spatial_mllm_ros.sim.profiles import shift_profile

SUITE_FIRST_SEED = 200_000  # below: the recipe's training (0..) and held-out (100000..) scenes
SEED_STRIDE = 1_000  # set i draws its scenes from first + i * SEED_STRIDE on: at most this many
SUITE_SCENES = 16  # scenes per set (8 episodes each), as the recipe's own benchmark
SUITE_PER_TASK = 50  # questions per sub-task per set: a 95 % interval about +-10 points at 85 %
# the sub-tasks the recipe trains that the data engine also writes (its robot family and camera translation)
ENGINE_TASKS: tuple[str, ...] = (
    "camera_translation_x",
    "camera_translation_y",
    "camera_translation_z",
    "robot_gripper_direction",
    "robot_gripper_yes_no",
    "robot_gripper_distance",
    "robot_object_direction",
    "robot_object_yes_no",
    "robot_object_distance",
)
Source = Literal["recipe", "raster", "engine"]


@dataclass(frozen=True)
class SuiteSet:
    """One held-out set: where its frames and questions come from and what it changes.

    source: "recipe" renders MuJoCo episodes and words them as the tiny recipe's benchmark does; "raster"
    draws the same kind of episodes without MuJoCo (suite.raster); "engine" is the data engine's own sim
    benchmark (its scenes, camera motions and templates) over ENGINE_TASKS.
    """

    name: str
    description: str
    source: Source = "recipe"
    episode: Mapping[str, Any] = field(default_factory=dict)  # the EpisodeSpec fields it changes

    def episode_spec(self) -> EpisodeSpec:
        """Return the episode generator's settings: the defaults but for what the set changes."""
        return dataclasses.replace(EpisodeSpec(), **self.episode)


def _profile(name: str) -> SuiteSet:
    return SuiteSet(name, shift_profile(name).description, episode={"profile": name})


SHIFT_SETS: tuple[SuiteSet, ...] = (
    *(
        _profile(name)
        for name in (
            "in_distribution",
            "shadows",
            "dim_light",
            "coloured_light",
            "surface_colours",
            "textures",
            "wrist_camera",
            "sensor_noise_jpeg",
        )
    ),
    SuiteSet("many_objects", "5-6 objects on the table (training: 1-4)", episode={"objects": (5, 6)}),
    SuiteSet(
        "small_motions",
        "the gripper, an object or the camera is moved 1-5 cm (training: 3-20 cm); approaches to a grasp "
        "or push keep their length",
        episode={"motion_m": (0.01, 0.05)},
    ),
    SuiteSet(
        "synthetic",
        "the same kind of episodes drawn without MuJoCo (flat-shaded OpenCV polygons), exact truth",
        "raster",
    ),
    SuiteSet(
        "engine_templates",
        "the data engine's own sim benchmark: its scenes, camera motions and question templates",
        "engine",
    ),
)
# Held-out data to fit a calibration on (never reported): half the scenes plain, half with every
# appearance group drawn at once. Both halves matter: a fit on unfamiliar frames alone sets the
# temperature of familiar ones too.
CALIBRATION_SETS: tuple[SuiteSet, ...] = (
    SuiteSet("mixed_looks", "half the scenes plain, half with every appearance group drawn",
             episode={"randomized_share": 0.5}),
)
SUITES: dict[str, tuple[SuiteSet, ...]] = {"shifts": SHIFT_SETS, "calibration": CALIBRATION_SETS}
# Where each suite's set numbering starts, so no two suites' sets share seeds.
FIRST_INDEX: dict[str, int] = {"shifts": 0, "calibration": 50}


def suite_sets(suite: str, names: tuple[str, ...] = ()) -> list[tuple[int, SuiteSet]]:
    """Return (index, set) of a suite, all or the named ones; SuiteError lists the known names otherwise."""
    if suite not in SUITES:
        raise SuiteError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    sets = list(enumerate(SUITES[suite], FIRST_INDEX[suite]))
    unknown = set(names) - {s.name for _, s in sets}
    if unknown:
        raise SuiteError(f"unknown sets {sorted(unknown)} in suite {suite!r}; known: "
                         f"{', '.join(s.name for _, s in sets)}")
    return [(i, s) for i, s in sets if not names or s.name in names]


def set_seeds(first_seed: int, index: int, scenes: int) -> range:
    """Scene seeds of the index-th set; SuiteError when they would leave the suite's seed range."""
    if not 1 <= scenes <= SEED_STRIDE:
        raise SuiteError(f"scenes per set must be 1..{SEED_STRIDE}, got {scenes}")
    first = first_seed + index * SEED_STRIDE
    if first_seed < SUITE_FIRST_SEED or first + SEED_STRIDE > SIM_HELD_OUT_FIRST_SEED:
        raise SuiteError(
            f"suite seeds must lie in [{SUITE_FIRST_SEED}, {SIM_HELD_OUT_FIRST_SEED}): below are the "
            f"recipe's training and held-out scenes, above the data engine's held-out ones; first seed "
            f"{first_seed}"
        )
    return range(first, first + scenes)
