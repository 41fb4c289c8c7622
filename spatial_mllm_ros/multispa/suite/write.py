"""Write a benchmark suite: each set's episodes, its benchmark.jsonl with images, and suite.json.

Recipe and raster sets go through the tiny recipe's own benchmark writer (questions drawn with
bench_seed + 1, at most per_task per sub-task chosen with bench_seed), so a model the recipe trained is
scored on every set as its own benchmark scores it. The engine set is `data benchmark --source sim` over
the sub-tasks both share. All of it is drawn from seeds: a rerun writes the same benchmark files, and
keeps the episodes already on disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spatial_mllm_ros.config import option, to_dict
from spatial_mllm_ros.multispa.benchmark import SIM_HELD_OUT_FIRST_SEED, build_benchmark
from spatial_mllm_ros.multispa.engine import GenerateConfig
from spatial_mllm_ros.multispa.evaluate import BENCHMARK_FILE
from spatial_mllm_ros.multispa.suite import raster
from spatial_mllm_ros.multispa.suite.errors import SuiteError
from spatial_mllm_ros.multispa.suite.sets import (
    ENGINE_TASKS,
    SEED_STRIDE,
    SUITE_FIRST_SEED,
    SUITE_PER_TASK,
    SUITE_SCENES,
    SUITES,
    SuiteSet,
    set_seeds,
    suite_sets,
)
from spatial_mllm_ros.multispa.train import simdata
from spatial_mllm_ros.multispa.train.simdata import EpisodeSpec, scene_seed
from spatial_mllm_ros.multispa.train.tiny.bank import QuestionBank
from spatial_mllm_ros.multispa.train.tiny.benchmark import write_benchmark
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import BENCH_FIRST_SEED, frame_files, read_truth
from spatial_mllm_ros.sim.profiles import shift_profile

log = logging.getLogger(__name__)
MANIFEST_FILE = "suite.json"
EPISODES_DIR = "episodes"


@dataclass
class SuiteConfig:
    """What `data benchmark --suite` writes; the same config always writes the same benchmark files."""

    out: Path = option(Path("runs/shifts"), help="suite folder: one NAME/benchmark.jsonl per set, suite.json")
    suite: str = option("shifts", help="which suite", choices=SUITES)
    sets: tuple[str, ...] = option((), help="write only these sets (empty: all of the suite)")
    scenes: int = option(SUITE_SCENES, help="scenes per set (8 episodes each)", range=(1, SEED_STRIDE))
    per_task: int = option(SUITE_PER_TASK, help="questions per sub-task per set, at most", range=(1, None))
    first_seed: int = option(
        SUITE_FIRST_SEED, help=f"seed of the first set's first scene; set i starts i * {SEED_STRIDE} later"
    )
    bench_seed: int = option(0, help="the recipe's benchmark draws (TinyRecipe.bench_seed)")
    engine_max_per_scene: int = option(40, help="engine set: samples per sub-task per scene", range=(1, None))
    workers: int = option(1, help="rendering processes", range=(1, None))

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.sets = tuple(self.sets)


@dataclass
class SetRecord:
    """One written set: its seeds, what it holds and every setting it was made with."""

    name: str
    description: str
    source: str
    seeds: tuple[int, int]  # first and last scene seed
    settings: dict[str, Any]  # the episode spec and look, or the engine's generation settings
    episodes: int = 0  # engine: scenes
    failed: int = 0  # episodes whose scripted motion could not run (engine: scenes skipped)
    questions: int = 0
    per_task: dict[str, int] = field(default_factory=dict)


@dataclass
class SuiteManifest:
    """suite.json: the suite's settings, the seeds no set may use, and every set's record."""

    suite: str
    scenes: int
    per_task: int
    bench_seed: int
    first_seed: int
    reserved_seeds: dict[str, list[int]]
    sets: list[SetRecord]

    def settings(self) -> dict[str, Any]:
        """Return what every set of one suite folder must share."""
        return {k: getattr(self, k) for k in ("suite", "scenes", "per_task", "bench_seed", "first_seed")}

    def to_json(self) -> str:
        """Pretty JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, path: Path) -> SuiteManifest:
        """Read a suite.json."""
        d = json.loads(path.read_text())
        d["sets"] = [SetRecord(**{**s, "seeds": tuple(s["seeds"])}) for s in d["sets"]]
        return cls(**d)


def reserved_seeds() -> dict[str, list[int]]:
    """Seed ranges (first, last) that belong to training and to the other held-out benchmarks."""
    recipe = TinyRecipe()
    return {
        "recipe_training": [0, recipe.train_scenes - 1],
        "recipe_held_out": [BENCH_FIRST_SEED, BENCH_FIRST_SEED + recipe.bench_scenes - 1],
        "engine_held_out_from": [SIM_HELD_OUT_FIRST_SEED],
    }


def _engine_config(config: SuiteConfig, seeds: range, out: Path) -> GenerateConfig:
    return GenerateConfig(
        source="sim", out=out, tasks=ENGINE_TASKS, seed=config.bench_seed, workers=config.workers,
        max_per_scene=config.engine_max_per_scene, sim_scenes=len(seeds), sim_first_seed=seeds.start,
        progress=False,
    )


def _settings(s: SuiteSet, config: SuiteConfig, seeds: range) -> dict[str, Any]:
    if s.source == "engine":
        engine = _engine_config(config, seeds, config.out / s.name)
        return {"tasks": list(engine.tasks), "max_per_scene": engine.max_per_scene, "seed": engine.seed}
    spec = s.episode_spec()
    look = to_dict(shift_profile(spec.profile)) if s.source == "recipe" else {"renderer": "suite.raster"}
    return {"episode": to_dict(spec), "look": look}


def _render_scene(source: str, seed: int, out: Path, spec: EpisodeSpec) -> int:
    generate = raster.generate_scene if source == "raster" else simdata.generate_scene
    return generate(seed, out, spec)


def _render(jobs: list[tuple[str, int, Path, EpisodeSpec]], workers: int) -> None:
    """Render every scene of the episode sets, in `workers` processes (scenes are independent)."""
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:  # no GL context exists in this process
            pool.starmap(_render_scene, jobs, chunksize=1)
    else:
        for job in jobs:
            _render_scene(*job)


@dataclass
class _EpisodeFiles:
    """An episode as the benchmark writer reads it (tiny.benchmark.EpisodeFrames), never preprocessed."""

    name: str
    truth: dict
    frame_paths: list[Path]


def _write_episode_set(record: SetRecord, seeds: range, config: SuiteConfig) -> Path:
    folder = config.out / record.name
    dirs = sorted(
        d
        for d in (folder / EPISODES_DIR).glob("ep*")
        if scene_seed(d) in seeds and (d / "truth.json").is_file()
    )
    episodes = [_EpisodeFiles(d.name, read_truth(d), frame_files(d)) for d in dirs]
    bank = QuestionBank([e.truth for e in episodes], config.bench_seed + 1)
    record.episodes = len(episodes)
    record.failed = sum(scene_seed(p) in seeds for p in (folder / EPISODES_DIR).glob("failed-*.txt"))
    return write_benchmark(episodes, bank, folder, config.per_task, config.bench_seed)


def _write_engine_set(record: SetRecord, seeds: range, config: SuiteConfig) -> Path:
    folder = config.out / record.name
    summary = build_benchmark(_engine_config(config, seeds, folder), per_task=config.per_task)
    record.episodes, record.failed = summary.scenes, summary.pool.get("skipped", 0)
    return folder / BENCHMARK_FILE


def _previous(config: SuiteConfig, manifest: SuiteManifest) -> dict[str, SetRecord]:
    """Return the records of sets already in the folder; SuiteError when made with other settings."""
    path = config.out / MANIFEST_FILE
    if not path.is_file():
        return {}
    old = SuiteManifest.read(path)
    if old.settings() != manifest.settings():
        raise SuiteError(f"{config.out} holds a suite written with {old.settings()}, not "
                         f"{manifest.settings()}: write this one to another folder")
    new = {r.name: r for r in manifest.sets}
    for r in old.sets:
        if r.name in new and (r.settings, r.seeds) != (new[r.name].settings, new[r.name].seeds):
            raise SuiteError(f"set {r.name!r} in {config.out} was written with other episode settings "
                             f"(the generator changed since?): write the suite to another folder")
    return {r.name: r for r in old.sets}


def write_suite(config: SuiteConfig) -> SuiteManifest:
    """Write the suite's sets (all, or config.sets) into config.out with suite.json; return the manifest."""
    chosen = [
        (s, set_seeds(config.first_seed, i, config.scenes)) for i, s in suite_sets(config.suite, config.sets)
    ]
    records = [
        SetRecord(s.name, s.description, s.source, (seeds[0], seeds[-1]), _settings(s, config, seeds))
        for s, seeds in chosen
    ]
    manifest = SuiteManifest(
        config.suite,
        config.scenes,
        config.per_task,
        config.bench_seed,
        config.first_seed,
        reserved_seeds(),
        records,
    )
    kept = _previous(config, manifest)
    t = time.perf_counter()
    jobs = [
        (s.source, seed, config.out / s.name / EPISODES_DIR, s.episode_spec())
        for s, seeds in chosen
        if s.source != "engine"
        for seed in seeds
    ]
    _render(jobs, config.workers)
    log.info("rendered %d scenes in %.0f s", len(jobs), time.perf_counter() - t)
    for (s, seeds), record in zip(chosen, records):
        t = time.perf_counter()
        write = _write_engine_set if s.source == "engine" else _write_episode_set
        path = write(record, seeds, config)
        tasks = Counter(json.loads(line)["task"] for line in path.read_text().splitlines() if line.strip())
        record.per_task = dict(sorted(tasks.items()))
        record.questions = sum(tasks.values())
        log.info("%s: %d questions in %.0f s", s.name, record.questions, time.perf_counter() - t)
    order = [s.name for s in SUITES[config.suite]]
    kept.update({r.name: r for r in records})
    manifest.sets = sorted(kept.values(), key=lambda r: order.index(r.name))
    (config.out / MANIFEST_FILE).write_text(manifest.to_json() + "\n")
    return manifest
