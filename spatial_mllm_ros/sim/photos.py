"""Real-image surface textures from data installed packages ship (matplotlib's sample data).

Nothing is downloaded: a photograph and a shaded terrain relief, cut, turned and recoloured at random.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PHOTO_SOURCES: tuple[str, ...] = ("grace_hopper.jpg", "jacksboro_fault_dem.npz")


@functools.cache
def _source(name: str) -> np.ndarray:
    """Load a sample-data image as RGB uint8 (relief maps hill-shaded like a stone or soil surface)."""
    from matplotlib import cbook, colormaps
    from matplotlib.colors import LightSource

    if name.endswith(".npz"):
        elevation = cbook.get_sample_data(name)["elevation"]
        shaded = LightSource(azdeg=315, altdeg=45).shade(
            elevation, cmap=colormaps["gist_earth"], blend_mode="soft", vert_exag=0.05
        )
        return np.ascontiguousarray((shaded[..., :3] * 255).astype(np.uint8))
    bgr = cv2.imread(str(cbook.get_sample_data(name, asfileobj=False)), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def photo_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Cut a size x size RGB texture from a sample image: random crop, flip, quarter turn and hue."""
    image = _source(PHOTO_SOURCES[int(rng.integers(len(PHOTO_SOURCES)))])
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 0.7))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = np.rot90(image[y : y + side, x : x + side], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tex = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(tex, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(180))) % 180  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.3, 1.2), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file bytes of an RGB image (MuJoCo reads texture assets as files)."""
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
