"""The generation run: scenes of one shard, in parallel, into JSONL + images, resumable, with a summary.

Output directory (suffix "-<k>-of-<n>" per shard when --num-shards > 1, so shards never share a file):

    samples<suffix>.jsonl    one Sample per line (format.sample_to_json); image paths relative to out
    manifest<suffix>.jsonl   a header line, then one line per finished scene (done or skipped, with the
                             byte offset the samples file had after it): the resume record
    summary<suffix>.json     counts and label balance per sub-task, skipped scenes with reasons
    images/<scene>/...       frames and drawn images (written to a temporary name, then renamed)

Every scene's lines are appended in one write after the scene is complete, and its manifest line only
after that write is flushed to disk; a resumed run first cuts the samples file back to the last
recorded offset, so a crash never leaves half a sample or a duplicate scene.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spatial_mllm_ros.multispa.errors import (
    EmptyRunError,
    ManifestError,
    MultispaError,
    NoApplicableTaskError,
    NoSamplesError,
    SceneError,
)
from spatial_mllm_ros.multispa.format import sample_to_json
from spatial_mllm_ros.multispa.sources import RosbagConfig, SceneSource, make_source
from spatial_mllm_ros.multispa.tasks import TASKS, resolve_tasks, tasks_for_source
from spatial_mllm_ros.multispa.tasks.base import ImageStore, TaskContext

log = logging.getLogger(__name__)
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class GenerateConfig:
    """One generation run (the CLI's flags); the same config always writes the same data."""

    source: str
    out: Path
    root: Path | None = None
    tasks: tuple[str, ...] = ("all",)
    seed: int = 0
    workers: int = 1
    num_shards: int = 1
    shard_index: int = 0
    max_per_scene: int = 10  # samples per sub-task per scene (upper bound)
    scenes: tuple[str, ...] = ()  # explicit scene ids (a split list); empty = all under root
    visibility_tolerance_m: float | None = None  # None = the paper's strict depth test
    paper_exact: bool = False  # invert poses with np.linalg.inv as Meta's engine (else the rigid R^T inverse)
    allow_pickle: bool = False  # TAPVid-3D images_jpeg_bytes stored as pickled object arrays
    sim_scenes: int = 8  # simulation: number of scenes, seeds sim_first_seed...
    sim_first_seed: int = 0
    rosbag: RosbagConfig | None = None  # --source rosbag: the bags, topics and frames to read
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.root = Path(self.root) if self.root else None
        requested = resolve_tasks(self.tasks)
        self.tasks = tasks_for_source(self.source, requested)
        if not self.tasks:
            raise MultispaError(
                f"none of the tasks {', '.join(requested)} can be built from {self.source} scenes")
        if not 0 <= self.shard_index < self.num_shards:
            raise MultispaError(f"shard index {self.shard_index} is not in 0..{self.num_shards - 1}")
        if self.workers < 1 or self.max_per_scene < 1:
            raise MultispaError("workers and max_per_scene must be >= 1")

    @property
    def suffix(self) -> str:
        """File-name suffix of this shard ("" for a single shard)."""
        return "" if self.num_shards == 1 else f"-{self.shard_index:05d}-of-{self.num_shards:05d}"

    def header(self) -> dict[str, Any]:
        """Return what must match for a resumed run to continue this output."""
        header = {"source": self.source, "seed": self.seed, "tasks": list(self.tasks),
                  "max_per_scene": self.max_per_scene, "visibility_tolerance_m": self.visibility_tolerance_m,
                  "num_shards": self.num_shards, "shard_index": self.shard_index}
        if self.paper_exact:  # only when set, so outputs written before the switch existed still resume
            header["paper_exact"] = True
        if self.rosbag is not None:
            header["rosbag"] = self.rosbag.header()
        return header


@dataclass
class SceneResult:
    """What one scene produced: its JSONL lines, counts and labels per sub-task, or why it was skipped."""

    scene_id: str
    status: str  # "done" or "skipped"
    reason: str = ""
    detail: str = ""
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the worker on this scene (throughput per core)

    def record(self, offset_end: int) -> dict[str, Any]:
        """Return the manifest line (everything but the samples)."""
        d = asdict(self)
        d.pop("lines")
        d["offset_end"] = offset_end
        return d


@dataclass
class Summary:
    """A run's totals: samples and label balance per sub-task, scenes done, skipped with reasons."""

    samples: int
    scenes_done: int
    scenes_skipped: int
    per_task: dict[str, int]
    label_balance: dict[str, dict[str, int]]
    skip_reasons: dict[str, int]
    skipped: list[dict[str, str]]
    dropped_frames: dict[str, int]
    seconds: float
    cpu_seconds: float  # summed over scenes and workers
    files: dict[str, str]

    def to_json(self) -> str:
        """Pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=False)


def stable_hash(text: str) -> int:
    """Hash text to 64 bits the same way in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def label_key(label: Any) -> str:
    """Label-balance bucket: categorical labels as they are, numbers by decade (0, 1-9, 10-99, ...)."""
    if isinstance(label, str):
        return label
    if isinstance(label, list | tuple):
        value = float(np.linalg.norm(np.asarray(label, dtype=np.float64)))
    else:
        value = float(label)
    if value < 1:
        return "0"
    decade = 10 ** int(np.floor(np.log10(value)))
    return f"{decade}-{10 * decade - 1}"


def process_scene(config: GenerateConfig, scene_id: str) -> SceneResult:
    """Load one scene and run every requested task on it; any failure becomes a skip with its reason."""
    start, cpu_start = time.perf_counter(), time.process_time()
    images_dir = config.out / "images" / scene_id.replace("/", "__")
    try:
        scene = open_source(config).load(scene_id)
        store = ImageStore(config.out, scene_id)
        ctx = TaskContext(scene, np.random.default_rng(0), store, config.visibility_tolerance_m,
                          config.paper_exact)
        result = SceneResult(scene_id, "done")
        applicable = [TASKS[n] for n in config.tasks if TASKS[n].applies_to(scene)]
        if not applicable:
            raise NoApplicableTaskError(scene_id, f"subset {scene.subset!r}" if scene.subset else "")
        for spec in applicable:
            ctx.rng = np.random.default_rng([config.seed, stable_hash(scene_id), stable_hash(spec.name)])
            samples = spec.generate(ctx, spec, config.max_per_scene)
            result.counts[spec.name] = len(samples)
            labels: Counter[str] = Counter(label_key(s.meta.get("label")) for s in samples)
            result.labels[spec.name] = dict(sorted(labels.items()))
            result.lines += [sample_to_json(s) + "\n" for s in samples]
        result.dropped = dict(scene.dropped)
        if not result.lines:
            raise NoSamplesError(scene_id)
    except SceneError as exc:
        shutil.rmtree(images_dir, ignore_errors=True)
        result = SceneResult(scene_id, "skipped", exc.reason, exc.detail)
    except Exception as exc:  # one bad scene must never stop a long run: record it and go on
        shutil.rmtree(images_dir, ignore_errors=True)
        log.debug("scene %s failed:\n%s", scene_id, traceback.format_exc())
        result = SceneResult(scene_id, "skipped", f"error {type(exc).__name__}", str(exc)[:300])
    result.seconds = round(time.perf_counter() - start, 3)
    result.cpu_seconds = round(time.process_time() - cpu_start, 3)
    return result


class Manifest:
    """The resume record of one shard: which scenes are finished and where the samples file ends."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.exists():
            self._read(header)
        else:
            path.write_text(json.dumps({"header": header}) + "\n")

    def _read(self, header: dict[str, Any]) -> None:
        complete = self.path.read_bytes().split(b"\n")[:-1]  # a last line without newline is torn
        good = 0  # bytes of complete, parseable lines
        for i, raw in enumerate(complete):
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                break
            if i == 0 and rec.get("header") != header:
                raise ManifestError(
                    f"{self.path} was written by another run ({rec.get('header')}); use a new --out "
                    f"or the same flags ({header})"
                )
            if i > 0:
                self.records.append(rec)
            good += len(raw) + 1
        with self.path.open("r+b") as f:
            f.truncate(good)
        if good == 0:
            self.path.write_text(json.dumps({"header": header}) + "\n")

    @property
    def finished(self) -> set[str]:
        """Scene ids already done or skipped."""
        return {r["scene_id"] for r in self.records}

    @property
    def offset(self) -> int:
        """Length of the samples file after the last finished scene."""
        return max((r["offset_end"] for r in self.records), default=0)

    def append(self, record: dict[str, Any]) -> None:
        """Add a finished scene, flushed to disk."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)


def open_source(config: GenerateConfig) -> SceneSource:
    """Open the scene source a config names."""
    return make_source(config.source, config.root, allow_pickle=config.allow_pickle,
                       sim_scenes=config.sim_scenes, sim_first_seed=config.sim_first_seed,
                       rosbag=config.rosbag)


def shard_scene_ids(ids: list[str], num_shards: int, shard_index: int) -> list[str]:
    """Pick one shard's scenes: every num_shards-th of the stable list, from shard_index."""
    return [s for k, s in enumerate(ids) if k % num_shards == shard_index]


def _results(config: GenerateConfig, todo: list[str]) -> Iterator[SceneResult]:
    """Scene results in scene order, from this process or a process pool.

    The pool forks workers from a fork server that has imported the engine once: workers start fast
    and inherit no threads or GL contexts of this process (MuJoCo renders in the workers).
    """
    work = partial(process_scene, config)
    if config.workers == 1 or len(todo) <= 1:
        yield from map(work, todo)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["spatial_mllm_ros.multispa.engine"])
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)  # one BLAS/OpenMP thread per worker: the pool is the parallelism
    try:
        pool = ctx.Pool(min(config.workers, len(todo)))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    with pool:
        yield from pool.imap(work, todo)


def generate(config: GenerateConfig) -> Summary:
    """Run (or resume) one shard of a generation run and write its summary.

    A run that ends with no sample at all raises EmptyRunError saying why (after writing the summary).
    """
    start = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    source = open_source(config)
    ids = list(config.scenes) if config.scenes else source.list_scenes()
    mine = shard_scene_ids(ids, config.num_shards, config.shard_index)
    manifest = Manifest(config.out / f"manifest{config.suffix}.jsonl", config.header())
    samples_path = config.out / f"samples{config.suffix}.jsonl"
    with samples_path.open("ab") as f:
        f.truncate(manifest.offset)  # cut a scene that was being written when a run died
    done = manifest.finished
    todo = [s for s in mine if s not in done]
    if done:
        log.info("resuming: %d of %d scenes already finished", len(mine) - len(todo), len(mine))
    written = skipped_now = 0
    bar = tqdm(total=len(todo), desc=f"{config.source} scenes", unit="scene", disable=not config.progress)
    with samples_path.open("ab") as out:
        for result in _results(config, todo):
            if result.lines:
                out.write("".join(result.lines).encode())
                out.flush()
                os.fsync(out.fileno())
            manifest.append(result.record(out.tell()))
            written += len(result.lines)
            skipped_now += result.status == "skipped"
            bar.update(1)
            bar.set_postfix(samples=written, skipped=skipped_now)
    bar.close()
    summary = summarize(manifest.records, time.perf_counter() - start, {
        "samples": samples_path.name, "manifest": manifest.path.name, "images": "images/"})
    summary_path = config.out / f"summary{config.suffix}.json"
    summary_path.write_text(summary.to_json() + "\n")
    if summary.samples == 0:
        raise EmptyRunError(empty_run_reason(config, len(ids), len(mine), summary, summary_path))
    return summary


def empty_run_reason(config: GenerateConfig, n_listed: int, n_mine: int, summary: Summary,
                     summary_path: Path) -> str:
    """Why a run wrote no sample, and what to change."""
    if n_listed == 0:
        where = f"under {config.root}" if config.root else "to simulate (--sim-scenes)"
        return f"no sample written: no {config.source} scenes {where}"
    if n_mine == 0:
        return (f"no sample written: shard {config.shard_index} of {config.num_shards} got none of the "
                f"{n_listed} scenes; use --num-shards {n_listed} or fewer")
    if summary.scenes_skipped:
        example: dict[str, str] = {}
        for skip in summary.skipped:
            detail = f": {skip['detail']}" if skip["detail"] else ""
            example.setdefault(skip["reason"], skip["scene"] + detail)
        reasons = "; ".join(f"{reason} x{n} (e.g. {example[reason]})"
                            for reason, n in summary.skip_reasons.items())
        return (f"no sample written: {summary.scenes_skipped} of {n_mine} scenes skipped: {reasons}. "
                f"Every scene's reason is in {summary_path}")
    return f"no sample written from {summary.scenes_done} scenes (tasks {', '.join(config.tasks)})"


def summarize(records: list[dict[str, Any]], seconds: float, files: dict[str, str]) -> Summary:
    """Totals over manifest records (so a resumed run's summary covers every scene)."""
    per_task: Counter[str] = Counter()
    balance: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    skipped = []
    for rec in records:
        per_task.update(rec.get("counts", {}))
        dropped.update(rec.get("dropped", {}))
        for task, labels in rec.get("labels", {}).items():
            balance.setdefault(task, Counter()).update(labels)
        if rec["status"] == "skipped":
            reasons[rec["reason"]] += 1
            skipped.append({"scene": rec["scene_id"], "reason": rec["reason"],
                            "detail": rec.get("detail", "")})
    return Summary(
        samples=sum(per_task.values()),
        scenes_done=sum(r["status"] == "done" for r in records),
        scenes_skipped=len(skipped),
        per_task=dict(sorted(per_task.items())),
        label_balance={t: dict(sorted(c.items())) for t, c in sorted(balance.items())},
        skip_reasons=dict(reasons),
        skipped=skipped,
        dropped_frames=dict(dropped),
        seconds=round(seconds, 2),
        cpu_seconds=round(sum(r.get("cpu_seconds", 0.0) for r in records), 2),
        files=files,
    )


def merge_summaries(out: Path) -> Summary:
    """Summarize every shard of an output directory (all manifest*.jsonl) into summary-all.json."""
    records: list[dict[str, Any]] = []
    files = sorted(Path(out).glob("manifest*.jsonl"))
    if not files:
        raise ManifestError(f"no manifest*.jsonl under {out}: nothing was generated there")
    for path in files:
        for raw in path.read_text().splitlines()[1:]:
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                break  # a torn last line of a shard that is still running or died
    summary = summarize(records, 0.0, {"manifests": ", ".join(p.name for p in files)})
    (Path(out) / "summary-all.json").write_text(summary.to_json() + "\n")
    return summary
