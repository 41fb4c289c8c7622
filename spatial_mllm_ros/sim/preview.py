"""Preview PNGs: one scene's cameras (RGB, depth, segmentation side by side), or many seeds in a grid."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from spatial_mllm_ros.sim.errors import SceneConfigError
from spatial_mllm_ros.sim.scene import SceneConfig
from spatial_mllm_ros.sim.world import RenderedFrame, SimWorld


def colourise(frame: RenderedFrame) -> np.ndarray:
    """RGB | depth (turbo colour map, near = red) | segmentation (one colour per id) as one RGB row."""
    depth = frame.depth
    valid = depth < np.percentile(depth, 99) + 1e-6
    lo, hi = float(depth[valid].min()), float(depth[valid].max())
    scaled = np.clip((hi - depth) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    depth_rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    palette = np.random.default_rng(3).integers(40, 255, size=(256, 3), dtype=np.uint8)
    palette[0] = 0
    return np.concatenate([frame.rgb, depth_rgb, palette[frame.seg]], axis=1)


def _write(rgb: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def save_preview(config: SceneConfig, path: Path) -> Path:
    """Render every camera of the scene once and write the contact sheet to `path` (PNG)."""
    with SimWorld(config) as world:
        rows = [colourise(world.render(cam)) for cam in config.cameras]
    return _write(np.concatenate(rows, axis=0), path)


def save_grid(config: SceneConfig, n: int, path: Path) -> Path:
    """Render seeds config.seed .. + n - 1 from the first camera; write them as a labelled grid (PNG)."""
    if n < 1:
        raise SceneConfigError(f"a grid needs at least one scene, got {n}")
    camera, tiles = config.cameras[0], []
    for seed in range(config.seed, config.seed + n):
        with SimWorld(dataclasses.replace(config, seed=seed)) as world:
            tile = world.render(camera, depth=False, seg=False).rgb.copy()
        cv2.putText(tile, f"seed {seed}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255,) * 3, 1, cv2.LINE_AA)
        tiles.append(tile)
    columns = math.ceil(math.sqrt(n))
    tiles += [np.zeros_like(tiles[0])] * (-n % columns)
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return _write(np.concatenate(rows, axis=0), path)
