"""Our InternVL tiling and Qwen patch grid against transformers' own image processors (PIL backends,
constructed directly: AutoProcessor cannot be built without torchvision here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from spatial_mllm_ros.model.errors import FrameError
from spatial_mllm_ros.model.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageSpec,
    best_grid,
    check_frame,
    patchify_image,
    tile_image,
)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.kron(coarse, np.ones((8, 8, 1), np.uint8))[:h, :w])


@pytest.mark.parametrize(
    ("h", "w", "tile", "max_tiles"),
    [
        (240, 320, 448, 6),
        (968, 1296, 448, 6),
        (480, 640, 224, 12),
        (100, 800, 224, 6),
        (300, 300, 224, 1),
        (1000, 200, 224, 4),
    ],
)
def test_tiling_matches_transformers(h: int, w: int, tile: int, max_tiles: int) -> None:
    img = _image(h, w)
    spec = ImageSpec("tiles", IMAGENET_MEAN, IMAGENET_STD, tile_size=tile, max_tiles=max_tiles)
    ours = tile_image(img, spec, method="pil")
    ref = GotOcr2ImageProcessorPil(
        size={"height": tile, "width": tile}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)
    )
    # the processor re-enables nothing by itself: pass crop_to_patches explicitly (environment.md pitfall)
    out = ref(
        images=[img], crop_to_patches=max_tiles > 1, max_patches=max_tiles, min_patches=1, return_tensors="pt"
    )
    assert ours.pixel_values.shape == out["pixel_values"].shape
    assert int(out["num_patches"][0]) == ours.n_tiles
    assert (ours.pixel_values - out["pixel_values"]).abs().max().item() < 1e-5
    assert ours.n_tokens == ours.n_tiles * spec.tokens_per_tile


def test_torch_resize_is_close_to_reference() -> None:
    img = _image(480, 640, seed=3)
    spec = ImageSpec("tiles", IMAGENET_MEAN, IMAGENET_STD, tile_size=224, max_tiles=6)
    ref = tile_image(img, spec, method="pil").pixel_values
    ours = tile_image(img, spec, method="torch").pixel_values
    assert ours.shape == ref.shape
    assert (ours - ref).abs().mean().item() < 0.01


@pytest.mark.parametrize(("h", "w"), [(240, 320), (968, 1296), (50, 700)])
def test_qwen_patches_match_transformers(h: int, w: int) -> None:
    img = _image(h, w, seed=1)
    spec = ImageSpec(
        "patches", CLIP_MEAN, CLIP_STD, patch_size=14, min_pixels=56 * 56, max_pixels=28 * 28 * 256
    )
    ours = patchify_image(img, spec, method="pil")
    out = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 256)(
        images=[img], return_tensors="pt"
    )
    assert tuple(out["image_grid_thw"][0].tolist()) == ours.grid_thw
    assert (ours.pixel_values - out["pixel_values"]).abs().max().item() < 1e-5
    assert ours.n_tokens == out["pixel_values"].shape[0] // 4


def test_best_grid_follows_aspect_ratio() -> None:
    assert best_grid(448, 448 * 3, 448, 6) == (3, 1)
    assert best_grid(968, 1296, 448, 6) == (3, 2)
    assert best_grid(1000, 100, 448, 6) == (1, 6)
    assert best_grid(448, 448, 448, 6) == (1, 1)
    assert best_grid(2000, 2000, 448, 6) == (2, 2)  # tie broken towards more tiles for a large frame


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((10, 10, 3), np.float32), "dtype"),
        (np.zeros((10, 10), np.uint8), "shape"),
        (np.zeros((10, 10, 4), np.uint8), "shape"),
        (np.zeros((1, 10, 3), np.uint8), "size"),
        ([[0, 1]], "numpy"),
    ],
)
def test_bad_frames(frame: object, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        check_frame(frame)


def test_tiles_on_torch_device_dtype() -> None:
    spec = ImageSpec("tiles", IMAGENET_MEAN, IMAGENET_STD, tile_size=224, max_tiles=4)
    out = tile_image(_image(240, 320), spec, device="cpu", method="torch")
    assert out.pixel_values.dtype == torch.float32 and out.pixel_values.device.type == "cpu"


@pytest.mark.parametrize(("h", "w"), [(240, 320), (968, 1296), (100, 800), (448, 448)])
def test_token_count_known_before_pixels(h: int, w: int) -> None:
    from spatial_mllm_ros.model.preprocess import image_token_count

    tiles = ImageSpec("tiles", IMAGENET_MEAN, IMAGENET_STD, tile_size=224, tokens_per_tile=64, max_tiles=6)
    patches = ImageSpec(
        "patches", CLIP_MEAN, CLIP_STD, patch_size=14, min_pixels=56 * 56, max_pixels=28 * 28 * 256
    )
    img = _image(h, w)
    assert image_token_count(h, w, tiles) == tile_image(img, tiles).n_tokens
    assert image_token_count(h, w, patches) == patchify_image(img, patches).n_tokens


def test_checkpoint_max_patches_caps_configured_tiles(tmp_path) -> None:
    import json

    from transformers import AutoConfig

    from spatial_mllm_ros.model.factory import make_tiny_model

    def read_hf_config(path):
        return AutoConfig.from_pretrained(path, local_files_only=True)

    ckpt = make_tiny_model(tmp_path / "one_tile", max_tiles=1)
    assert json.loads((ckpt / "preprocessor_config.json").read_text())["max_patches"] == 1
    spec = ImageSpec.from_checkpoint("internvl", read_hf_config(ckpt), ckpt, max_tiles=6)
    assert spec.max_tiles == 1
    ckpt6 = make_tiny_model(tmp_path / "six_tiles", max_tiles=6)
    assert ImageSpec.from_checkpoint("internvl", read_hf_config(ckpt6), ckpt6, max_tiles=4).max_tiles == 4
