"""What a real camera does to an image after the optics: blur, exposure, white balance, noise, JPEG.

Pure numpy/OpenCV and seeded, so a simulated camera with the same seed gives the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MIN_BLUR_SIGMA = 0.05  # px; below this a Gaussian kernel changes no 8-bit pixel


@dataclass(frozen=True)
class SensorEffects:
    """One camera's image effects; the defaults change nothing."""

    blur_sigma: float = 0.0  # Gaussian blur (px): focus and motion softness
    exposure: float = 1.0  # gain on every channel (2 ** stops)
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain (R, G, B)
    noise_std: float = 0.0  # Gaussian read noise in 8-bit levels
    jpeg_quality: int = 0  # JPEG re-encoding quality (1-100); 0: none

    @property
    def active(self) -> bool:
        """Whether any effect changes pixels."""
        return self != SensorEffects()

    def lut(self) -> np.ndarray | None:
        """256x1x3 lookup table of exposure and white balance (None: both neutral)."""
        gains = self.exposure * np.asarray(self.white_balance)
        if np.allclose(gains, 1.0):
            return None
        levels = np.arange(256, dtype=np.float64)[:, None] * gains
        return np.clip(np.rint(levels), 0, 255).astype(np.uint8)[:, None, :]


class Sensor:
    """Applies SensorEffects to a camera's frames; noise differs per frame, reproducibly from the seed."""

    def __init__(self, effects: SensorEffects, seed: Sequence[int] | int) -> None:
        self.effects = effects
        self._seed = seed
        self._lut = effects.lut()
        self.reset()

    def reset(self) -> None:
        """Restart the noise sequence (a world reset replays the same frames)."""
        self._rng = np.random.default_rng(self._seed)
        self._noise: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Return `rgb` (HxWx3 uint8) as this camera would have delivered it."""
        fx = self.effects
        if not fx.active:
            return rgb
        out = rgb
        if fx.blur_sigma >= MIN_BLUR_SIGMA:
            out = cv2.GaussianBlur(out, (0, 0), fx.blur_sigma)
        if self._lut is not None:
            out = cv2.LUT(out, self._lut)
        if fx.noise_std > 0:
            out = cv2.add(out.astype(np.int16), self._noise_window(out.shape), dtype=cv2.CV_8U)
        if fx.jpeg_quality:
            bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
            buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, fx.jpeg_quality])[1]
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
        return np.ascontiguousarray(out)

    def _noise_window(self, shape: tuple[int, ...]) -> np.ndarray:
        """Return a window of a noise field twice the frame's size, at a random offset per frame.

        Per-pixel Gaussian noise for a twentieth of the cost of drawing a frame's worth each time
        (3 ms at 320x240 on these CPUs, as long as a render).
        """
        h, w = shape[:2]
        if self._noise is None or self._noise.shape[0] < 2 * h or self._noise.shape[1] < 2 * w:
            field = self._rng.standard_normal((2 * h, 2 * w, shape[2]), dtype=np.float32)
            self._noise = np.rint(field * self.effects.noise_std).astype(np.int16)
        y, x = (int(v) for v in self._rng.integers(0, (h + 1, w + 1)))
        return self._noise[y : y + h, x : x + w]
