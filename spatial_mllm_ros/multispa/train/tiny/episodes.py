"""The recipe's simulated episodes: rendered once, split into training and held-out scenes, read back.

Each episode comes back as model tiles (preprocessed as the runtime does) with stage 1's targets and truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from spatial_mllm_ros.model.preprocess import ImageSpec, prepare_image
from spatial_mllm_ros.multispa.train.questions import camera_xyz
from spatial_mllm_ros.multispa.train.simdata import colour_classes, generate_range, scene_seed
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe

BENCH_FIRST_SEED = 100_000  # held-out scenes: never used for training


@dataclass
class EpisodeData:
    """One episode in memory: its frames as model tiles, stage-1 targets and truth."""

    name: str
    pixels: torch.Tensor  # (T, 3, S, S) float16, normalised as the runtime does
    seg: torch.Tensor  # (T, grid*grid, classes)
    depth: torch.Tensor  # (T, grid*grid)
    globals_: torch.Tensor  # (T, entities, 5): x, y, z, x/z, y/z in camera axes
    present: torch.Tensor  # (T, entities)
    truth: dict
    frame_paths: list[Path]


def entity_slots() -> tuple[str, ...]:
    """Stage-1 regression slots: the gripper, the table centre, then one per object colour."""
    return ("gripper", "table", *colour_classes()[3:])


def _globals(truth: dict, t: int) -> tuple[np.ndarray, np.ndarray]:
    slots = entity_slots()
    out = np.zeros((len(slots), 5), np.float32)
    present = np.zeros(len(slots), np.float32)
    points = {"gripper": truth["gripper"][t], "table": [0.0, 0.0, 0.0]}
    colours = [o.split()[0] for o in truth["objects"]]
    for name, pos in truth["objects"].items():
        colour = name.split()[0]
        if colours.count(colour) == 1:
            points[colour] = pos[t]
    for name, p in points.items():
        xyz = camera_xyz(truth, t, p)
        if xyz[2] > 0.05:
            i = slots.index(name)
            out[i] = [xyz[0], xyz[1], xyz[2], xyz[0] / xyz[2], xyz[1] / xyz[2]]
            present[i] = 1.0
    return out, present


def read_truth(ep_dir: Path) -> dict:
    """Return an episode's truth.json (poses, positions, motion), what its questions are drawn from."""
    return json.loads((ep_dir / "truth.json").read_text())


def frame_files(ep_dir: Path) -> list[Path]:
    """Return an episode's frames f0.png, f1.png, ... in time order (f10 after f9)."""
    return sorted(ep_dir.glob("f*.png"), key=lambda p: int(p.stem[1:]))


def load_episode(ep_dir: Path, spec: ImageSpec) -> EpisodeData:
    """Read one generated episode and preprocess its frames exactly like the runtime."""
    from spatial_mllm_ros.multispa.train.data import load_rgb

    truth = read_truth(ep_dir)
    targets = np.load(ep_dir / "targets.npz")
    paths = frame_files(ep_dir)
    pixels = torch.stack([prepare_image(load_rgb(p), spec).pixel_values[0] for p in paths]).half()
    g = [_globals(truth, t) for t in range(len(paths))]
    seg = torch.from_numpy(targets["seg"])
    seg = F.pad(seg, (0, len(colour_classes()) - seg.shape[-1]))
    return EpisodeData(
        ep_dir.name,
        pixels,
        seg,
        torch.from_numpy(targets["depth"]),
        torch.from_numpy(np.stack([x[0] for x in g])),
        torch.from_numpy(np.stack([x[1] for x in g])),
        truth,
        paths,
    )


def render_episodes(recipe: TinyRecipe, episodes_dir: Path) -> tuple[list[Path], list[Path]]:
    """Render train scenes (seeds 0..) and benchmark scenes (BENCH_FIRST_SEED..) with `workers` processes.

    Episodes already on disk are kept; returns the training and the held-out episode directories.
    """
    n = recipe.workers
    jobs = [(w, len(range(w, recipe.train_scenes, n))) for w in range(n)]
    jobs += [(BENCH_FIRST_SEED + w, len(range(w, recipe.bench_scenes, n))) for w in range(n)]
    args = [(first, count, episodes_dir, recipe.episode, n) for first, count in jobs if count]
    if recipe.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(recipe.workers) as pool:  # no GL context exists yet
            pool.starmap(generate_range, args)
    else:
        for a in args:
            generate_range(*a)
    made = {p: scene_seed(p) for p in episodes_dir.glob("ep*") if (p / "truth.json").is_file()}
    train = sorted(p for p, seed in made.items() if seed < min(BENCH_FIRST_SEED, recipe.train_scenes))
    held_out = sorted(p for p, seed in made.items() if 0 <= seed - BENCH_FIRST_SEED < recipe.bench_scenes)
    return train, held_out
