"""Streams of episodes for recording and training: one scene per seed, scripted or random motions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import numpy as np

from spatial_mllm_ros.sim.errors import SceneConfigError
from spatial_mllm_ros.sim.motions import MOTION_SECONDS, motion_fps, motion_from_spec, run_episode
from spatial_mllm_ros.sim.scene import SceneConfig
from spatial_mllm_ros.sim.truth import Episode
from spatial_mllm_ros.sim.world import SimWorld

log = logging.getLogger(__name__)


def generate_episodes(
    config: SceneConfig,
    n: int,
    motions: Sequence[str] = ("random",),
    n_frames: int = 16,
    fps: float = 10.0,
    *,
    depth: bool = True,
    seg: bool = True,
) -> Iterator[Episode]:
    """Yield `n` episodes; episode k uses scene seed config.seed + k and motion spec k mod len(motions).

    A spec is a parse_motion string or "random" (any feasible motion); "random:push,idle" limits the kinds.
    """
    if n < 1:
        raise SceneConfigError(f"the number of episodes must be >= 1, got {n}")
    if n_frames >= 2 and (n_frames - 1) / fps < MOTION_SECONDS / 2:
        log.warning("each motion lasts %.2f s of simulated time: the gripper lags so rushed a plan and "
                    "pushes may leave their objects; --fps %.3g spreads %d frames over %.1f s",
                    (n_frames - 1) / fps, motion_fps(n_frames), n_frames, MOTION_SECONDS)
    rng = np.random.default_rng(config.seed)
    for k in range(n):
        spec = motions[k % len(motions)]
        with SimWorld(dataclasses.replace(config, seed=config.seed + k)) as world:
            motion = motion_from_spec(spec, world, rng)
            yield run_episode(world, motion, n_frames, fps, depth=depth, seg=seg)
