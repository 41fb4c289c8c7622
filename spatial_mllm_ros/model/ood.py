"""Out-of-distribution score of camera frames: how unlike the training frames a frame's vision features are.

A model's confidence says nothing when the input is unfamiliar (a new table colour left the shipped model
wrong at 0.96 confidence), so every answer also carries a score computed from what the vision encoder
made of the frames. Statistics of in-distribution frame descriptors (their mean, the main axes of their
spread, and per dimension what is left off those axes) are saved with the checkpoint; a frame's score is its
distance from them divided by the distance that `quantile` of held-out in-distribution frames stay under.
So 1.0 means "as unusual as the 1 % oddest familiar frames", and a stream scoring above it is suspect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

OOD_FILE = "ood_stats.safetensors"
FORMAT_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FAMILIAR_LIMIT = 1.0  # scores above it are less familiar than the fit's `quantile` of familiar frames


def frame_descriptor(embeds: torch.Tensor) -> np.ndarray:
    """One vector per frame: mean and spread over its image tokens of the LLM-space embeddings."""
    x = embeds.detach().float().reshape(-1, embeds.shape[-1])
    return torch.cat([x.mean(0), x.std(0, unbiased=False)]).cpu().numpy()


@dataclass(frozen=True)
class FeatureStats:
    """In-distribution statistics of frame descriptors, saved beside a checkpoint's weights."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D) main axes of the spread, orthonormal rows
    variances: np.ndarray  # (k,) spread along each axis
    residual_variances: np.ndarray  # (D,) mean square per dimension of what the axes leave
    threshold: float  # raw distance that `quantile` of held-out familiar frames stay under
    quantile: float
    n_frames: int

    def distance(self, descriptors: np.ndarray) -> np.ndarray:
        """Raw distance per row: Mahalanobis on the main axes plus the residual's, per dimension (~1)."""
        z = np.atleast_2d(descriptors).astype(np.float64) - self.mean
        proj = z @ self.components.T
        residual = (np.square(z - proj @ self.components) / self.residual_variances).sum(1)
        return ((np.square(proj) / self.variances).sum(1) + residual) / (len(self.variances) + len(self.mean))

    def score(self, descriptors: np.ndarray) -> np.ndarray:
        """Score per row: 1.0 is the `quantile` of familiar frames; higher is less familiar."""
        return self.distance(descriptors) / self.threshold

    def save(self, directory: str | Path) -> Path:
        """Write OOD_FILE into a checkpoint directory (safetensors: no pickle)."""
        path = Path(directory) / OOD_FILE
        meta = {"version": FORMAT_VERSION, "threshold": self.threshold,
                "quantile": self.quantile, "n_frames": self.n_frames,
                "descriptor": "mean and std over image tokens of the projector output"}
        save_file({"mean": self.mean.astype(np.float32), "components": self.components.astype(np.float32),
                   "variances": self.variances.astype(np.float32),
                   "residual_variances": self.residual_variances.astype(np.float32)}, str(path),
                  metadata={"ood": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, directory: str | Path) -> FeatureStats | None:
        """Read OOD_FILE from a checkpoint directory; None when the checkpoint has none."""
        path = Path(directory) / OOD_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), "np") as handle:
            meta = json.loads((handle.metadata() or {}).get("ood", "{}"))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: OOD statistics of format {meta.get('version')!r}, expected "
                             f"{FORMAT_VERSION}; refit them with `spatial-mllm calibrate`")
        t = load_file(str(path))
        return cls(t["mean"].astype(np.float64), t["components"].astype(np.float64),
                   t["variances"].astype(np.float64), t["residual_variances"].astype(np.float64),
                   float(meta["threshold"]),
                   float(meta["quantile"]), int(meta["n_frames"]))


def fit_feature_stats(descriptors: np.ndarray, components: int = 32, quantile: float = 0.99,
                      held_out: float = 0.25, seed: int = 0) -> FeatureStats:
    """Fit statistics on familiar frames; the threshold comes from a held-out share, not the fitted rows.

    Scoring the rows the axes were fitted on would set the threshold too low (they sit closer than new
    familiar frames do), and ordinary frames would then look unfamiliar.
    """
    x = np.asarray(descriptors, np.float64)
    if x.ndim != 2 or len(x) < 8:
        raise ValueError(f"need at least 8 descriptors (rows) to fit OOD statistics, got shape {x.shape}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(2, math.ceil(held_out * len(x)))
    fit, test = x[order[n_test:]], x[order[:n_test]]
    mean = fit.mean(0)
    _, sing, axes = np.linalg.svd(fit - mean, full_matrices=False)
    k = max(1, min(components, len(fit) - 1, x.shape[1] - 1))
    variances = np.maximum(np.square(sing[:k]) / max(1, len(fit) - 1), 1e-12)
    basis = axes[:k]
    z = fit - mean
    residual = np.square(z - (z @ basis.T) @ basis).mean(0)
    residual = np.maximum(residual, 1e-6 * residual.max() + 1e-12)  # dimensions the fit never saw move
    stats = FeatureStats(mean, basis, variances, residual, 1.0, quantile, len(x))
    threshold = float(np.quantile(stats.distance(test), quantile))
    return FeatureStats(mean, basis, variances, residual, max(threshold, 1e-12), quantile, len(x))


def auroc(familiar: np.ndarray, unfamiliar: np.ndarray) -> float:
    """Chance that an unfamiliar frame scores above a familiar one (ties count half): 0.5 is no separation."""
    a, b = np.asarray(familiar, np.float64), np.asarray(unfamiliar, np.float64)
    if not len(a) or not len(b):
        raise ValueError("AUROC needs scores of both familiar and unfamiliar frames")
    greater = (b[:, None] > a[None, :]).sum()
    ties = (b[:, None] == a[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(a) * len(b)))


def image_files(sources: Sequence[str | Path], limit: int = 0) -> list[Path]:
    """Frames named by files, folders (searched recursively) or MultiSPA JSONL files (their `image` lists).

    Sorted and de-duplicated, so a fit is reproducible; `limit` > 0 keeps an evenly spaced subset.
    """
    found: set[Path] = set()
    for source in map(Path, sources):
        if source.is_dir():
            found.update(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.suffix == ".jsonl" and source.is_file():
            for line in source.read_text().splitlines():
                if line.strip():
                    images = json.loads(line).get("image", [])
                    names = [images] if isinstance(images, str) else images
                    found.update(source.parent / name for name in names)
        elif source.is_file():
            found.add(source)
        else:
            raise FileNotFoundError(f"{source}: no such image, folder or benchmark JSONL")
    files = sorted(found)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} frames under {[str(s) for s in sources]}")
    if 0 < limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files
