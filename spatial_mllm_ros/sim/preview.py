"""A contact sheet of a scene: every camera's RGB, depth and segmentation side by side in one PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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


def save_preview(config: SceneConfig, path: Path) -> Path:
    """Render every camera of the scene once and write the contact sheet to `path` (PNG)."""
    with SimWorld(config) as world:
        rows = [colourise(world.render(cam)) for cam in config.cameras]
    sheet = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path
