"""Whether an exported vision backend beats torch eager on this machine: timed once, kept beside the graph.

onnxruntime is not faster everywhere (on a small ViT on a CPU it can lose to PyTorch), so listing it
before torch in `model.vision_backends` must not make a node slower. The first load on a machine times
both on the same tiles and saves the result in the graph's metadata under the backend and a key naming
the processor (or GPU), the thread count and torch's dtype; later loads read it. A re-export rewrites
the metadata, so the timing is taken again for the new graph.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TILES = 1  # tiles per timed call: a 448-px tile of a 300M-parameter tower is seconds on a CPU core
ROUNDS = 2  # timed calls of each backend after one warm-up call, interleaved; the fastest counts


@dataclass(frozen=True)
class SpeedCheck:
    """One backend against torch eager on the same tiles (ms, the fastest of ROUNDS calls each)."""

    backend_ms: float
    torch_ms: float
    tiles: int
    machine: str

    @property
    def faster(self) -> bool:
        """Whether the backend beats torch eager here."""
        return self.backend_ms < self.torch_ms

    def describe(self, backend: str) -> str:
        """Say what was measured, for the log and the reason a backend was skipped."""
        return (
            f"{backend} {self.backend_ms:.1f} ms vs torch {self.torch_ms:.1f} ms for {self.tiles} tile(s) "
            f"({self.torch_ms / self.backend_ms:.2f}x) on {self.machine}"
        )


def machine_key(device: torch.device, dtype: torch.dtype) -> str:
    """Name what a timing depends on besides the backend: processor or GPU, threads, torch's dtype."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{_cpu_name()}, {torch.get_num_threads()} thread(s)"
    return f"{where}, torch {str(dtype).removeprefix('torch.')}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # no /proc outside Linux
        pass
    return platform.processor() or platform.machine()


def time_pair(
    backend: Callable[[], object], reference: Callable[[], object], device: torch.device
) -> tuple[float, float]:
    """Fastest wall time (ms) of each function: one warm-up call each, then ROUNDS interleaved calls."""
    best = [float("inf"), float("inf")]
    for round_ in range(ROUNDS + 1):
        for k, fn in enumerate((backend, reference)):
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                best[k] = min(best[k], (time.perf_counter() - start) * 1e3)
    return best[0], best[1]


def check_speed(
    meta: Path, backend: str, machine: str, measure: Callable[[], tuple[float, float]], tiles: int = TILES
) -> SpeedCheck:
    """Return the saved timing of `backend` on `machine`, else take measure() = (its ms, torch's ms) now."""
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    saved = info.get("speed", {}).get(backend, {}).get(machine)
    if saved is not None:
        return SpeedCheck(**saved)
    log.info("timing %s against torch eager once on %s", backend, machine)
    backend_ms, torch_ms = measure()
    check = SpeedCheck(backend_ms, torch_ms, tiles, machine)
    info.setdefault("speed", {}).setdefault(backend, {})[machine] = asdict(check)
    tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(meta)
    except OSError as exc:  # a read-only export: the timing is taken again at the next load
        log.warning("cannot save the backend timing in %s (%s)", meta, exc)
        tmp.unlink(missing_ok=True)
    return check
