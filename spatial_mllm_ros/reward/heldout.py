"""Held-out sim episodes that grade a rubric: successes and failures in scenes no training run has seen.

Seeds: reward set i draws its scenes from 90000 + 1000 i on, apart from the tiny recipe's training scenes
(0-299) and held-out benchmark (100000-100015), the shift suites (200000 on, 250000 on) and the data
engine's benchmark (1000000 on). A scene where a motion cannot be planned (the target is off the table,
the object too wide to grasp) is skipped for the next seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spatial_mllm_ros.reward.errors import RewardError
from spatial_mllm_ros.sim import SceneConfig, parse_motion, run_episode
from spatial_mllm_ros.sim.errors import MotionError, UnreachableTargetError
from spatial_mllm_ros.sim.recorder import record_episodes
from spatial_mllm_ros.sim.truth import Episode

HELDOUT_FIRST_SEED = 90_000
SEED_STRIDE = 1_000  # scenes a set may draw, skipped ones included


@dataclass(frozen=True)
class HeldoutSet:
    """Successes and failures of one rubric's task, alternating; each pair shares one unseen scene."""

    name: str
    rubric: str  # the rubric file under config/ that these episodes grade
    success: str  # motion specs (sim.motions.parse_motion)
    failure: str
    first_seed: int

    def scene(self, seed: int) -> SceneConfig:
        """Scene of a pair: two objects, the front camera only, no shadows (fast to render)."""
        return SceneConfig(seed=seed, n_objects=2, cameras=("front",), shadows=False)


# Failures are failed grasps for both: the gripper approaches and closes on the object as in a success,
# and the object slips back, so only the object's own motion tells the two apart.
PUSH_LEFT = HeldoutSet("push_left", "rubric_sim_push_left.yaml", "push:direction=left", "failed_grasp",
                       HELDOUT_FIRST_SEED)
PICK_PLACE = HeldoutSet("pick_place", "rubric_sim_pick_place.yaml",
                        "pick_place:direction=right,distance_m=0.15", "failed_grasp",
                        HELDOUT_FIRST_SEED + SEED_STRIDE)
HELDOUT_SETS: dict[str, HeldoutSet] = {s.name: s for s in (PUSH_LEFT, PICK_PLACE)}


def heldout_episodes(held: HeldoutSet, n: int, n_frames: int = 16) -> Iterator[Episode]:
    """Yield n episodes, success and failure alternating, a pair per scene from the set's seeds on."""
    seed, last = held.first_seed, held.first_seed + SEED_STRIDE
    for k in range(0, n, 2):
        while True:
            if seed >= last:
                raise RewardError(f"held-out set {held.name}: no plannable scene in seeds "
                                  f"{held.first_seed}-{last - 1} for episode {k}")
            try:
                pair = [run_episode(held.scene(seed), parse_motion(spec), n_frames=n_frames, depth=False,
                                    seg=False, n_track_points=0)
                        for spec in (held.success, held.failure)[: n - k]]
            except (UnreachableTargetError, MotionError):
                seed += 1
                continue
            seed += 1
            yield from pair
            break


def heldout_sim_bags(
    root: str | Path, n: int, held: HeldoutSet = PUSH_LEFT, n_frames: int = 16,
) -> list[Path]:
    """Record n held-out episodes of a set, the first half in an mcap-raw bag, the rest in a sqlite3-jpeg one.

    Both storage formats and both image transports are graded, as a user's bags come in either.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    episodes = list(heldout_episodes(held, n, n_frames))
    half = max(1, n // 2)
    bags = [record_episodes(episodes[:half], root / f"{held.name}_mcap_raw")]
    if episodes[half:]:
        bags.append(record_episodes(episodes[half:], root / f"{held.name}_sqlite_jpeg", "sqlite3",
                                    compressed=True))
    return bags
