"""Image preprocessing owned by us: InternVL dynamic tiling and Qwen's patch grid, on the model's device.

Owning it means it runs on the robot's GPU (torch resize) and needs no transformers processor classes;
the "pil" resize reproduces transformers' own image processors exactly (tested), "torch" is within a
grey level of them.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.model.errors import FrameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_FRAME_PIXELS = 8192 * 8192  # refuse absurd frames before allocating tiles for them


@dataclass(frozen=True)
class ImageSpec:
    """How a checkpoint wants its frames: tiles (InternVL) or a patch grid (Qwen), and normalisation."""

    layout: str  # "tiles" | "patches"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tile_size: int = 448  # tiles: tile edge in pixels
    tokens_per_tile: int = 256  # tiles: LLM tokens one tile becomes
    max_tiles: int = 6
    use_thumbnail: bool = True
    patch_size: int = 14  # patches
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @classmethod
    def from_checkpoint(
        cls, family: str, hf_config: Any, path: Path | None, max_tiles: int = 6, use_thumbnail: bool = True
    ) -> ImageSpec:
        """Read tile/patch sizes from the model config and normalisation from preprocessor_config.json."""
        pre: dict[str, Any] = {}
        if path is not None and (path / "preprocessor_config.json").is_file():
            pre = json.loads((path / "preprocessor_config.json").read_text())
        vc = hf_config.vision_config
        if family == "internvl":
            size = vc.image_size[0] if isinstance(vc.image_size, (list, tuple)) else vc.image_size
            patch = vc.patch_size[0] if isinstance(vc.patch_size, (list, tuple)) else vc.patch_size
            per_tile = int((size // patch) ** 2 * hf_config.downsample_ratio**2)
            return cls(
                "tiles",
                tuple(pre.get("image_mean", IMAGENET_MEAN)),
                tuple(pre.get("image_std", IMAGENET_STD)),
                tile_size=int(size),
                tokens_per_tile=per_tile,
                # A checkpoint trained on fewer tiles (SpatialMLLM-tiny: one) caps what the config asks for.
                max_tiles=min(max_tiles, int(pre.get("max_patches", max_tiles))),
                use_thumbnail=use_thumbnail,
            )
        size = pre.get("size", {})
        return cls(
            "patches",
            tuple(pre.get("image_mean", CLIP_MEAN)),
            tuple(pre.get("image_std", CLIP_STD)),
            patch_size=int(vc.patch_size),
            merge_size=int(vc.spatial_merge_size),
            temporal_patch_size=int(vc.temporal_patch_size),
            min_pixels=int(pre.get("min_pixels", size.get("shortest_edge", 56 * 56))),
            max_pixels=int(pre.get("max_pixels", size.get("longest_edge", 28 * 28 * 1280))),
        )


@dataclass
class PreparedImage:
    """One frame ready for the vision encoder, and how many LLM tokens it becomes."""

    pixel_values: torch.Tensor  # tiles: (n_tiles, 3, S, S); patches: (n_patches, C*T*P*P)
    n_tokens: int
    grid: tuple[int, int]  # tiles: (columns, rows) of the tiling; patches: (grid_h, grid_w)
    grid_thw: tuple[int, int, int] | None = None  # patches only

    @property
    def n_tiles(self) -> int:
        """Tiles (InternVL) or patches (Qwen) in pixel_values."""
        return int(self.pixel_values.shape[0])


def check_frame(image: Any, index: int = 0) -> np.ndarray:
    """Return the frame as a C-contiguous HxWx3 uint8 array or raise FrameError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise FrameError(
            f"frame {index}: expected a numpy array (RGB uint8 HxWx3), got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise FrameError(f"frame {index}: dtype {image.dtype}, expected uint8 RGB")
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"frame {index}: shape {image.shape}, expected HxWx3 RGB")
    h, w = image.shape[:2]
    if h < 2 or w < 2 or h * w > MAX_FRAME_PIXELS:
        raise FrameError(f"frame {index}: size {w}x{h} out of range (2x2 .. {MAX_FRAME_PIXELS} pixels)")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=64)
def tile_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """All (columns, rows) with min_tiles <= columns*rows <= max_tiles, fewest tiles first."""
    grids = [
        (c, r)
        for c in range(1, max_tiles + 1)
        for r in range(1, max_tiles + 1)
        if min_tiles <= c * r <= max_tiles
    ]
    return tuple(sorted(grids, key=lambda g: g[0] * g[1]))


def best_grid(height: int, width: int, tile: int, max_tiles: int, min_tiles: int = 1) -> tuple[int, int]:
    """Pick InternVL's tile grid: the aspect ratio closest to the frame's.

    On a tie, more tiles win while the frame has more than half the pixels those tiles would cover.
    """
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), math.inf
    for cols, rows in tile_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen's target size: both sides multiples of factor, pixel count within [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise FrameError(f"frame aspect ratio {max(height, width) / min(height, width):.0f} exceeds 200")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _resize(image: np.ndarray, height: int, width: int, method: str, device: torch.device) -> torch.Tensor:
    """Bicubic resize to (3, height, width) float32 on device, values 0..255 on the uint8 grid."""
    if method == "pil":
        from PIL import Image

        out = np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
        return torch.from_numpy(out.copy()).to(device).permute(2, 0, 1).float()
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (height, width):
        x = torch.nn.functional.interpolate(
            x, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        )
    return x[0].round_().clamp_(0, 255)


def _normalize(x: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, device=x.device).view(-1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(-1, 1, 1)
    return (x / 255.0 - mean) / std


def resize_method(requested: str, device: torch.device) -> str:
    """auto: PIL (the reference) on CPU, torch (on the GPU) elsewhere."""
    if requested != "auto":
        return requested
    return "pil" if device.type == "cpu" else "torch"


def tile_image(
    image: np.ndarray, spec: ImageSpec, device: torch.device | str = "cpu", method: str = "auto"
) -> PreparedImage:
    """InternVL dynamic tiling: resize to the best grid of tiles, cut, add a thumbnail, normalise."""
    device = torch.device(device)
    method = resize_method(method, device)
    h, w = image.shape[:2]
    s = spec.tile_size
    cols, rows = best_grid(h, w, s, spec.max_tiles) if spec.max_tiles > 1 else (1, 1)
    canvas = _resize(image, rows * s, cols * s, method, device)
    tiles = canvas.reshape(3, rows, s, cols, s).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, s, s)
    if spec.use_thumbnail and rows * cols > 1:
        tiles = torch.cat([tiles, _resize(image, s, s, method, device)[None]], dim=0)
    pixels = _normalize(tiles, spec)
    return PreparedImage(pixels.contiguous(), pixels.shape[0] * spec.tokens_per_tile, (cols, rows))


def patchify_image(
    image: np.ndarray, spec: ImageSpec, device: torch.device | str = "cpu", method: str = "auto"
) -> PreparedImage:
    """Qwen-VL patch grid: smart resize, normalise, flatten into (grid_h*grid_w, C*T*P*P) patches."""
    device = torch.device(device)
    method = resize_method(method, device)
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    rh, rw = smart_resize(image.shape[0], image.shape[1], p * m, spec.min_pixels, spec.max_pixels)
    x = _normalize(_resize(image, rh, rw, method, device), spec)
    gh, gw = rh // p, rw // p
    patches = x.reshape(3, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
    patches = patches[:, :, :, :, :, None].expand(*patches.shape[:5], t, p, p)
    flat = patches.reshape(gh * gw, 3 * t * p * p).contiguous()
    return PreparedImage(flat, gh * gw // (m * m), (gh, gw), (1, gh, gw))


def image_token_count(height: int, width: int, spec: ImageSpec) -> int:
    """LLM tokens a height x width frame will take, known before any pixel work (context checks)."""
    if spec.layout == "tiles":
        cols, rows = (
            best_grid(height, width, spec.tile_size, spec.max_tiles) if spec.max_tiles > 1 else (1, 1)
        )
        tiles = cols * rows + (1 if spec.use_thumbnail and cols * rows > 1 else 0)
        return tiles * spec.tokens_per_tile
    m = spec.merge_size
    rh, rw = smart_resize(height, width, spec.patch_size * m, spec.min_pixels, spec.max_pixels)
    return (rh // spec.patch_size) * (rw // spec.patch_size) // (m * m)


def prepare_image(
    image: np.ndarray, spec: ImageSpec, device: torch.device | str = "cpu", method: str = "auto"
) -> PreparedImage:
    """Preprocess one checked frame the way its checkpoint's family wants it."""
    if spec.layout == "tiles":
        return tile_image(image, spec, device, method)
    return patchify_image(image, spec, device, method)
