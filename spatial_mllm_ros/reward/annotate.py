"""Annotate bags: decode each frame once, ask every rubric question, score, and stream episode results.

Decoding runs in a bounded prefetch thread while the model answers, and the outputs (manifest records,
plots, reward-bag copies) are written by a writer thread behind a bounded queue (writer.py); each frame is
passed with its key so the model's embedding cache computes a frame's vision embedding once across all
questions and steps.
Batches run in-process, in a process pool (`jobs`), or as Ray tasks (`ray_address`); a failing bag is
reported and the others finish.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from spatial_mllm_ros.bags import Bag, BagError, Episode, Sampling, Split, bag_id, find_episodes
from spatial_mllm_ros.frames import Frame
from spatial_mllm_ros.reward.errors import EmptyEpisodeError, RewardError, RubricError
from spatial_mllm_ros.reward.labels import BagResult, EpisodeResult, Label, value_text
from spatial_mllm_ros.reward.rubric import (
    Check,
    CheckScores,
    Rubric,
    aggregate_episode,
    rubric_text,
    step_rewards,
)
from spatial_mllm_ros.reward.scores import value_order_correlation
from spatial_mllm_ros.reward.workers import worker_pool
from spatial_mllm_ros.reward.writer import OutputWriter

if TYPE_CHECKING:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

log = logging.getLogger(__name__)

THUMB_WIDTH = 128
WRITE_QUEUE = 8  # outputs (records, plots, bag copies) waiting for the writer thread before answering waits
RUBRIC_COPY = "rubric.yaml"  # the rubric a run used, kept beside its labels for reward-eval


@dataclass(frozen=True)
class AnnotateConfig:
    """Everything that decides the labels of a bag (the resume fingerprint is built from it)."""

    rubric: Rubric
    model: ModelConfig
    image_topic: str | None = None
    split: Split = field(default_factory=Split)
    sampling: Sampling = field(default_factory=Sampling)
    typestore: str = "jazzy"
    prefetch: int = 2
    thumbnails: int = 6

    @classmethod
    def from_rubric(
        cls,
        rubric: Rubric,
        model: ModelConfig,
        *,
        split: str | None = None,
        every: int | None = None,
        count: int | None = None,
        step_s: float | None = None,
        **rest: Any,
    ) -> AnnotateConfig:
        """Build a config whose split and sampling are the rubric's unless given here.

        Any one sampling argument replaces the rubric's whole sampling (every, count and step_s are
        alternatives, not additions).
        """
        if every is None and count is None and step_s is None:
            every, count, step_s = rubric.every, rubric.count, rubric.step_s
        return cls(
            rubric=rubric,
            model=model,
            split=Split.parse(split or rubric.split or "whole"),
            sampling=Sampling(every=every or 1, count=count, step_s=step_s),
            **rest,
        )

    def fingerprint(self) -> dict[str, Any]:
        """List the settings a resumed run must share with the run it continues."""
        return {
            "rubric": self.rubric.fingerprint,
            "model": str(self.model.checkpoint or "shipped"),
            "adapter": str(self.model.adapter),
            "image_topic": self.image_topic or self.rubric.image_topic or "",
            "split": repr(self.split),
            "sampling": repr(self.sampling),
            "typestore": self.typestore,
        }


def episode_key(bag_path: str | Path, index: int) -> str:
    """Manifest key of an episode: bag name plus a hash of its absolute path (same-named bags differ)."""
    path = str(Path(bag_path).resolve())
    return f"{bag_id(path)}-{hashlib.sha1(path.encode()).hexdigest()[:8]}#{index}"


def _thumbnails(frames: Sequence[Frame], n: int) -> list[tuple[int, np.ndarray]]:
    if not frames or n <= 0:
        return []
    m = min(n, len(frames))
    picks = sorted({round(i * (len(frames) - 1) / max(1, m - 1)) for i in range(m)})
    out = []
    for i in picks:
        img = frames[i].pixels
        h, w = img.shape[:2]
        size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
        out.append((frames[i].stamp_ns, cv2.resize(img, size, interpolation=cv2.INTER_AREA)))
    return out


class EpisodeScorer:
    """Asks a rubric's questions about an episode's frames and turns answers into rewards."""

    def __init__(self, model: SpatialModel, rubric: Rubric, thumbnails: int = 6) -> None:
        self.model = model
        self.rubric = rubric
        self.thumbnails = thumbnails

    def _label(
        self, result: EpisodeResult, check: Check | None, step: int, frames: Sequence[Frame], answer: Any,
        reward: float, span: str, question: str, check_id: str, check_type: str,
    ) -> Label:
        return Label(
            bag=result.bag, bag_path=result.bag_path, episode=result.episode, topic=result.topic,
            check=check_id, check_type=check_type, span=span, step=step,
            stamps_ns=[f.stamp_ns for f in frames], question=question, answer=answer.raw,
            value=value_text(answer.value), unit=answer.unit, confidence=answer.confidence,
            reward=float(reward), expected=check.expect if check else "", error=answer.error,
            ood_score=answer.ood_score,
        )

    def _ask(self, frames: Sequence[Frame], keys: Sequence[str], checks: Sequence[Check]) -> list:
        return self.model.ask_many([f.pixels for f in frames], [c.as_question() for c in checks], keys=keys)

    def score(self, episode: Episode, frames: Sequence[Frame], result: EpisodeResult) -> EpisodeResult:
        """Fill `result` with labels, step rewards, progress, VOC and the episode reward."""
        rubric = self.rubric.for_episode(episode.labels)
        if len(frames) < 2:
            raise EmptyEpisodeError(
                f"bag {result.bag_path} episode {episode.index}: {len(frames)} frame(s) on {result.topic}; "
                "a rubric needs at least 2"
            )
        keys = [f"{result.bag_path}|{f.key}" for f in frames]
        per_check = {c.id: CheckScores(c.id, c.weight) for c in rubric.checks}
        by_step: dict[int, list[tuple[float, float]]] = {}
        step_checks = rubric.checks_for("step")
        if step_checks:
            for i in range(len(frames) - 1):
                pair = frames[i:i + 2]
                for check, answer in zip(step_checks, self._ask(pair, keys[i:i + 2], step_checks)):
                    r = check.reward(answer)
                    per_check[check.id].rewards.append(r)
                    by_step.setdefault(i, []).append((check.weight, r))
                    result.labels.append(self._label(
                        result, check, i, pair, answer, r, "step", check.question, check.id, check.type,
                    ))
        episode_checks = rubric.checks_for("episode")
        if episode_checks:
            ends = [frames[0], frames[-1]]
            for check, answer in zip(episode_checks, self._ask(ends, [keys[0], keys[-1]], episode_checks)):
                r = check.reward(answer)
                per_check[check.id].rewards.append(r)
                result.labels.append(self._label(
                    result, check, -1, ends, answer, r, "episode", check.question, check.id, check.type,
                ))
        scores = list(per_check.values())
        if rubric.progress is not None:
            result.voc = self._progress(rubric, episode, frames, keys, result)
            scores.append(CheckScores(rubric.progress.id, rubric.progress.weight, [result.voc]))
        result.step_rewards = step_rewards(by_step)
        result.reward = aggregate_episode(scores, rubric.episode_aggregate)
        result.n_frames = len(frames)
        result.stamps_ns = [f.stamp_ns for f in frames]
        result.thumbnails = _thumbnails(frames, self.thumbnails)
        return result

    def _progress(
        self, rubric: Rubric, episode: Episode, frames: Sequence[Frame], keys: Sequence[str],
        result: EpisodeResult,
    ) -> float:
        """GVL: frame 0 fixed at 0 %, the others rated against it in shuffled order; VOC in time order."""
        progress = rubric.progress
        assert progress is not None
        n = len(frames)
        m = min(progress.frames or n, n)
        picks = sorted({round(i * (n - 1) / (m - 1)) for i in range(m)})
        order = picks[1:]
        random.Random(progress.seed * 1_000_003 + episode.index).shuffle(order)
        values: dict[int, float] = {picks[0]: 0.0}
        answers = {}
        for j in order:
            answer = self.model.ask([frames[0].pixels, frames[j].pixels], progress.as_question(),
                                    keys=[keys[0], keys[j]])
            answers[j] = answer
            p = progress.progress(answer)
            values[j] = 0.0 if p is None else p
        series = [values[j] for j in picks]
        result.progress = series
        previous = 0.0
        for j, value in zip(picks[1:], series[1:]):
            pair = [frames[0], frames[j]]
            result.labels.append(self._label(
                result, None, j, pair, answers[j], value - previous, "progress", progress.question,
                progress.id, "progress",
            ))
            previous = value
        return value_order_correlation(series)


def _prefetch(bag: Bag, topic: str, episodes: Sequence[Episode], sampling: Sampling, depth: int) -> Iterator:
    """Decode episodes in a background thread, at most `depth` ahead of the model."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        for ep in episodes:
            if stop.is_set():
                return
            try:
                put((ep, [f for _, f in bag.frames(topic, sampling.select(ep.times))]))
            except Exception as exc:  # handed to the consumer, which knows which bag and episode
                put((ep, exc))
                return
        put(None)

    thread = threading.Thread(target=produce, name=f"decode-{bag.path.name}", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            yield item
            if isinstance(item[1], Exception):
                return
    finally:
        stop.set()
        thread.join()


def annotate_bag(
    path: str | Path, config: AnnotateConfig, model: SpatialModel, done: frozenset[str] = frozenset(),
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> BagResult:
    """Annotate one bag; a bag-level failure ends up in BagResult.error, an episode's in its result."""
    path = Path(path)
    result = BagResult(bag_id(path), str(path.resolve()))
    scorer = EpisodeScorer(model, config.rubric, config.thumbnails)
    try:
        with Bag(path, config.typestore) as bag:
            topic = bag.image_topic(config.image_topic or config.rubric.image_topic)
            episodes = find_episodes(bag, topic, config.split)
            todo = [e for e in episodes if episode_key(path, e.index) not in done]
            result.skipped = len(episodes) - len(todo)
            for episode, frames in _prefetch(bag, topic, todo, config.sampling, config.prefetch):
                if isinstance(frames, Exception):
                    raise frames
                ep = EpisodeResult(
                    result.bag, result.bag_path, episode.index, episode_key(path, episode.index), topic,
                    episode.start_ns, episode.end_ns, name=episode.name, truth=dict(episode.labels),
                )
                try:
                    scorer.score(episode, frames, ep)
                except (EmptyEpisodeError, RubricError) as exc:
                    ep.error = str(exc)
                    log.warning("%s", exc)
                result.episodes.append(ep)
                if on_episode is not None:
                    on_episode(ep)
    except (RewardError, BagError) as exc:
        result.error = str(exc)
    except Exception as exc:  # keep the batch alive; the message names the bag
        result.error = f"bag {path}: {type(exc).__name__}: {exc}"
    return result


# ------------------------------------------------------------------ model per process

_MODELS: dict[str, SpatialModel] = {}


def load_model(config: ModelConfig) -> SpatialModel:
    """Load a model once per process (pool and Ray workers reuse it across bags)."""
    key = repr(config)
    if key not in _MODELS:
        from spatial_mllm_ros.model.runtime import SpatialModel

        _MODELS[key] = SpatialModel.load(config)
    return _MODELS[key]


def _annotate_in_worker(path: str, config: AnnotateConfig, done: frozenset[str]) -> BagResult:
    return annotate_bag(path, config, load_model(config.model), done)


def run_batch(
    bags: Sequence[str | Path], config: AnnotateConfig, done: frozenset[str] = frozenset(),
    on_episode: Callable[[EpisodeResult], None] | None = None,
    on_bag: Callable[[BagResult], None] | None = None,
    jobs: int = 1, ray_address: str | None = None, model: SpatialModel | None = None,
) -> list[BagResult]:
    """Annotate many bags: in-process (episodes stream to on_episode), in a process pool, or on Ray.

    Pool and Ray workers return whole bags: on_episode is then called for each episode as its bag returns.
    In-process runs use `model` when given (else one loaded from config.model).
    """
    results: list[BagResult] = []

    def finish(res: BagResult, stream: bool) -> None:
        if not stream and on_episode is not None:
            for ep in res.episodes:
                on_episode(ep)
        if on_bag is not None:
            on_bag(res)
        results.append(res)

    if ray_address:
        for res in _run_ray(bags, config, done, ray_address, jobs):
            finish(res, stream=False)
    elif jobs > 1:
        with worker_pool(jobs) as pool:
            futures = [pool.submit(_annotate_in_worker, str(b), config, done) for b in bags]
            for fut in as_completed(futures):
                finish(fut.result(), stream=False)
    else:
        model = model or load_model(config.model)
        for b in bags:
            finish(annotate_bag(b, config, model, done, on_episode), stream=True)
    return results


def _run_ray(
    bags: Sequence[str | Path], config: AnnotateConfig, done: frozenset[str], address: str, jobs: int = 1,
) -> Iterator:
    """Run the same per-bag work as Ray tasks; `local` starts a Ray here with `jobs` CPUs (workers)."""
    try:
        import ray
    except ImportError:
        raise RewardError("--ray needs the optional extra: pip install 'spatial_mllm_ros[ray]'") from None
    started = not ray.is_initialized()
    if started:
        local = {"num_cpus": max(1, jobs)} if address == "local" else {"address": address}
        ray.init(**local, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        task = ray.remote(num_cpus=1)(_annotate_in_worker)
        pending = [task.remote(str(b), config, done) for b in bags]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


@dataclass
class AnnotateSummary:
    """What a run did: episodes labelled now and before, labels written, bags that failed."""

    out: Path
    episodes: int
    labels: int
    resumed: int
    failed: list[BagResult]
    reward_bags: list[Path]
    out_of_distribution: int = 0  # episodes whose frames look unlike the model's training frames


def annotate_to_dir(
    bags: Sequence[str | Path], config: AnnotateConfig, out: str | Path, jobs: int = 1,
    ray_address: str | None = None, write_bag: bool = False, show_progress: bool = True,
    model: SpatialModel | None = None, plots: bool = True,
) -> AnnotateSummary:
    """Annotate bags into `out`, resuming from its manifest; writes tables, plots, report, reward bags."""
    from tqdm import tqdm

    from spatial_mllm_ros.reward.manifest import Manifest
    from spatial_mllm_ros.reward.outputs import (
        atomic_write_text,
        plot_episode,
        write_report,
        write_reward_bag,
        write_tables,
    )

    out = Path(out)
    manifest = Manifest(out, config.fingerprint())
    atomic_write_text(out / RUBRIC_COPY, rubric_text(config.rubric))
    resumed = len(manifest.done)
    failed: list[BagResult] = []
    reward_bags: list[Path] = []
    bar = tqdm(total=len(bags), unit="bag", desc="annotate", disable=not show_progress)

    writer = OutputWriter(WRITE_QUEUE)
    labelled = 0

    def on_episode(ep: EpisodeResult) -> None:
        nonlocal labelled
        labelled += 1
        writer.submit(manifest.record, ep)
        if plots and not ep.error:
            writer.submit(plot_episode, out, ep)
        bar.set_postfix(episodes=resumed + labelled, failed=len(failed))

    def copy_bag(bag_path: str) -> None:
        episodes = manifest.results(bag_path)  # this run's and earlier runs' episodes of the bag
        reward_bags.append(write_reward_bag(out, bag_path, episodes, config.typestore))

    def on_bag(res: BagResult) -> None:
        bar.update(1)
        if res.error:
            failed.append(res)
        elif write_bag:
            writer.submit(copy_bag, res.bag_path)

    try:
        with writer:  # joined before the tables and the report, which read what it wrote
            run_batch(bags, config, manifest.done, on_episode, on_bag, jobs=jobs, ray_address=ray_address,
                      model=model)
    finally:
        bar.close()
    results = manifest.results()
    write_tables(out, results, failed)
    write_report(out, results, failed, f"Rewards: {config.rubric.name}")
    n_labels = sum(len(r.labels) for r in results)
    unfamiliar = sum(bool(r.out_of_distribution) for r in results)
    return AnnotateSummary(out, len(results), n_labels, resumed, failed, reward_bags, unfamiliar)
