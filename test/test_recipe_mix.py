"""The tiny recipe's training mix: per-scene looks drawn from the seed, rendered for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spatial_mllm_ros.multispa.train.simdata import (
    SMALL_MOTION_M,
    EpisodeSpec,
    episode_dir,
    failed_note,
    generate_scene,
    scene_seed,
)


def test_the_mix_is_drawn_per_seed_in_its_shares_and_off_by_default() -> None:
    plain = EpisodeSpec()
    assert all(plain.for_scene(s) == ("in_distribution", False, plain) for s in range(50))
    mixed = EpisodeSpec(randomized_share=0.5, wrist_share=0.2, small_motion_share=0.3)
    draws = [mixed.for_scene(s) for s in range(2000)]
    assert draws[:20] == [mixed.for_scene(s) for s in range(20)]  # deterministic by seed
    assert abs(np.mean([p == "randomized" for p, _, _ in draws]) - 0.5) < 0.04
    assert abs(np.mean([w for _, w, _ in draws]) - 0.2) < 0.04
    assert abs(np.mean([s.motion_m == SMALL_MOTION_M for _, _, s in draws]) - 0.3) < 0.04


def test_a_wrist_scene_with_small_motions_renders_and_is_labelled_from_the_wrist(tmp_path: Path) -> None:
    spec = EpisodeSpec(width=160, height=120, n_frames=3, episodes_per_scene=3, wrist_share=1.0,
                       small_motion_share=1.0, randomized_share=1.0)
    assert generate_scene(7, tmp_path, spec) >= 1
    made = sorted(tmp_path.glob("ep*")) + sorted(tmp_path.glob("failed-*"))
    assert len(made) == 3 and {scene_seed(p) for p in made} == {7}  # every episode or its note, named by seed
    checked = 0
    for ep in sorted(tmp_path.glob("ep*")):
        truth = json.loads((ep / "truth.json").read_text())
        assert truth["camera"] == "wrist"
        moves = [np.subtract(track[-1], track[0]) for track in truth["objects"].values()]
        if truth["motion"] == "translate":  # the gripper alone moves 1-3 cm (settling adds a little)
            moves = [np.subtract(truth["gripper"][-1], truth["gripper"][0])]
        elif truth["motion"] != "push":
            continue  # the gripper travels to a grasped object first; a pick-place also lifts it
        assert max(np.linalg.norm(m) for m in moves) < 0.05, truth["motion"]
        checked += 1
    assert checked


def test_episode_names_carry_their_scene_seed() -> None:
    root = Path("episodes")
    for seed, k in [(0, 0), (7, 3), (100015, 7), (250001, 12)]:
        assert scene_seed(episode_dir(root, seed, k)) == seed
        assert scene_seed(failed_note(root, seed, k)) == seed
    assert episode_dir(root, 100003, 7).name == "ep100003_07"  # the suite's and the recipe's folders alike
