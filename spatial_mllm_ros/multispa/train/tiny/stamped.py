"""Saved stage results stamped with the settings that made them: reused only by a run with the same ones.

Tensors in safetensors, the rest as strings in its metadata (nothing is unpickled), written atomically so
that a stop while saving leaves the previous file whole.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spatial_mllm_ros.files import atomic_write


def load_stamped(path: Path, fingerprint: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """Return (tensors, metadata) of a file saved with `fingerprint`; None when absent or made otherwise."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
        if meta.get("fingerprint") != fingerprint:
            return None
        names = fh.keys()  # a safetensors file handle is not iterable
        return {name: fh.get_tensor(name) for name in names}, meta


def save_stamped(
    path: Path, tensors: dict[str, torch.Tensor], fingerprint: str, meta: dict[str, str]
) -> None:
    """Write tensors with `fingerprint` and `meta` in the metadata, atomically."""
    from safetensors.torch import save_file

    stamped = {**meta, "fingerprint": fingerprint}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=stamped))
