"""Reward annotator throughput: frames/s end to end vs bag decoding alone and model alone (same run).

Usage: nice .venv/bin/python bench/bench_reward.py [--quick|--full] [--checkpoint DIR] [--rubric FILE]
       nice .venv/bin/python bench/bench_reward.py --eval 16 [--checkpoint DIR] [--tag NAME]   (quality)
--eval N grades N held-out sim episodes of each rubric (push left; pick and place: successes against
failed grasps, spatial_mllm_ros.reward.heldout) with the shipped or given model, prints every figure with
its 95 % interval beside the targets it must reach, and keeps the graded figures in
runs/reward_eval/TAG_SET.json (TAG: "shipped", else the checkpoint folder's name) for later comparison.
Bags are recorded by the MuJoCo sim (320x240, front camera); the model is the given checkpoint or a tiny
random one (throughput only, not quality). Model-only and pipeline runs share one warmed-up model, its
embedding cache cleared before each run, and are interleaved `--reps` times (best time kept) because
this machine is shared. Then `spatial-mllm annotate --jobs 1` and `--jobs 2` run as the user runs them
(fresh processes, no thread variables set) on the same bags, interleaved, and their wall-time ratio is
printed: on few cores N = 2 must not be slower than N = 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spatial_mllm_ros.reward import (
    AnnotateConfig,
    Bag,
    EpisodeResult,
    EpisodeScorer,
    Sampling,
    Split,
    annotate_to_dir,
    find_episodes,
    load_rubric,
    run_batch,
)

ROOT = Path(__file__).resolve().parents[1]
EVAL_OUT = ROOT / "runs" / "reward_eval"


def sim_bags(root: Path, n_bags: int, n_eps: int, n_frames: int) -> list[Path]:
    """Bags of alternating successful translations and failed grasps, recorded by the sim."""
    from spatial_mllm_ros.sim import SceneConfig, parse_motion, run_episode
    from spatial_mllm_ros.sim.recorder import record_episodes

    motions = ("translate:direction=left,distance=0.1", "failed_grasp")
    bags = []
    for b in range(n_bags):
        episodes = [
            run_episode(SceneConfig(seed=100 * b + k, n_objects=2, cameras=("front",), shadows=False),
                        parse_motion(motions[k % 2]), n_frames=n_frames, depth=False, seg=False,
                        n_track_points=0)
            for k in range(n_eps)
        ]
        bags.append(record_episodes(episodes, root / f"bag{b}"))
    return bags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 bag x 2 episodes x 6 frames")
    mode.add_argument("--full", action="store_true", help="4 bags x 6 episodes x 24 frames, 2 reps")
    parser.add_argument("--checkpoint", default="", help="model directory (default: tiny random model)")
    parser.add_argument("--rubric", default=str(ROOT / "config" / "rubric_move_left.yaml"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reps", type=int, default=0, help="interleaved repetitions, best kept (default 1)")
    parser.add_argument("--eval", type=int, default=0, metavar="N",
                        help="quality instead: N held-out sim episodes per rubric, graded against sim truth")
    parser.add_argument("--sets", default="", help="--eval: comma-separated held-out sets (default: all)")
    parser.add_argument("--tag", default="", help="--eval: name of the saved figures (default: shipped, "
                        "else the checkpoint folder's name)")
    parser.add_argument("--eval-out", default=str(EVAL_OUT), help="--eval: where the figures are kept")
    args = parser.parse_args()
    if args.eval:
        tag = args.tag or (Path(args.checkpoint).name if args.checkpoint else "shipped")
        quality(args.eval, args.checkpoint, args.device, [s for s in args.sets.split(",") if s],
                Path(args.eval_out) / tag)
        return
    n_bags, n_eps, n_frames = (1, 2, 6) if args.quick else (4, 6, 24) if args.full else (2, 2, 8)
    reps = args.reps or (2 if args.full else 1)

    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

    tmp = Path(tempfile.mkdtemp(prefix="bench_reward_"))
    checkpoint = args.checkpoint
    if not checkpoint:
        from spatial_mllm_ros.model.factory import make_tiny_model

        checkpoint = str(make_tiny_model(tmp / "tiny"))
    bags = sim_bags(tmp, n_bags, n_eps, n_frames)
    rubric = load_rubric(args.rubric)
    config = AnnotateConfig(rubric=rubric, model=ModelConfig(checkpoint=checkpoint, device=args.device),
                            split=Split("marker"), sampling=Sampling())

    def decode_all() -> list:
        out = []
        for path in bags:
            with Bag(path) as bag:
                topic = bag.image_topic(rubric.image_topic)
                for ep in find_episodes(bag, topic, config.split):
                    frames = [f for _, f in bag.frames(topic, config.sampling.select(ep.times))]
                    out.append((path, ep, frames))
        return out

    model = SpatialModel.load(config.model)
    decoded = decode_all()
    n = sum(len(fr) for _, _, fr in decoded)
    _, ep0, frames0 = decoded[0]
    warm = EpisodeResult("w", "w", 0, "w", "t", 0, 0)
    EpisodeScorer(model, rubric, 0).score(ep0, frames0[:2], warm)  # warm-up: first calls are not throughput

    def timed(fn: object) -> tuple[float, float]:
        """Wall and process CPU seconds (CPU time stays meaningful when other jobs load the machine)."""
        model.cache.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    def model_only() -> None:
        scorer = EpisodeScorer(model, rubric, thumbnails=0)
        for path, ep, frames in decoded:  # the bag path keys the embedding cache, as in the pipeline
            scorer.score(ep, frames, EpisodeResult(path.name, str(path), ep.index, "k", "t", 0, 0))

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for rep in range(reps):
        for name, fn in (
            ("decode only", decode_all),
            ("model only", model_only),
            ("pipeline (overlapped)", lambda: run_batch(bags, config, model=model)),
            ("end to end + outputs", lambda r=rep: annotate_to_dir(bags, config, tmp / f"out{r}", model=model,
                                                                   show_progress=False)),
            ("end to end, no plots", lambda r=rep: annotate_to_dir(bags, config, tmp / f"np{r}", model=model,
                                                                   show_progress=False, plots=False)),
        ):
            w, c = timed(fn)
            wall[name], cpu[name] = min(wall.get(name, w), w), min(cpu.get(name, c), c)

    print(f"{n_bags} bags x {n_eps} episodes x {n_frames} frames 320x240 (sim), {len(rubric.checks)} step "
          f"checks, model {Path(checkpoint).name} on {model.device}, best of {reps}; load {_load()}")
    print(f"{'':<24}{'wall frames/s':>14}{'CPU frames/s':>14}")
    for name in wall:
        print(f"{name:<24}{n / wall[name]:14.1f}{n / cpu[name]:14.1f}")
    for clock, t in (("wall", wall), ("CPU", cpu)):
        dec, mod, pipe = t["decode only"], t["model only"], t["pipeline (overlapped)"]
        print(f"[{clock}] pipeline/model-only {mod / pipe:.2f}x, pipeline/decode-only {dec / pipe:.3f}x, "
              f"pipeline/serial(decode+model) {(dec + mod) / pipe:.2f}x; end to end (plots on) takes "
              f"{t['end to end + outputs'] / mod:.2f}x the model alone's time (target <= 1.15x)")
    model.close()
    if len(bags) < 2:  # --jobs 2 needs a bag for each worker
        (tmp / "second").mkdir()
        bags = bags + sim_bags(tmp / "second", 1, n_eps, n_frames)
    jobs_ratio(bags, args.rubric, checkpoint, args.device, reps, tmp)


def jobs_ratio(bags: list[Path], rubric: str, checkpoint: str, device: str, reps: int, tmp: Path) -> None:
    """Wall time of the CLI with --jobs 1 and --jobs 2, start-up and model loading included."""
    from spatial_mllm_ros.reward.workers import THREAD_ENV, available_cores, threads_per_worker

    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_ENV, "OPENBLAS_NUM_THREADS")}
    wall: dict[int, float] = {}
    for rep in range(reps):
        for jobs in (1, 2):
            cmd = [sys.executable, "-m", "spatial_mllm_ros", "annotate", *map(str, bags), "--rubric", rubric,
                   "--out", str(tmp / f"jobs{jobs}_{rep}"), "--checkpoint", checkpoint, "--device", device,
                   "--split", "marker", "--every", "1", "--jobs", str(jobs), "--no-plots", "--no-progress"]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"annotate --jobs {jobs} failed:\n{res.stderr[-2000:]}")
            wall[jobs] = min(wall.get(jobs, float("inf")), time.perf_counter() - t0)
    print(f"annotate CLI on {len(bags)} bags, {available_cores()} cores ({threads_per_worker(2)} torch "
          f"thread(s) per worker at --jobs 2), best of {reps}: --jobs 1 {wall[1]:.1f} s, --jobs 2 "
          f"{wall[2]:.1f} s, jobs2/jobs1 {wall[2] / wall[1]:.2f}x (<= 1: not slower); load {_load()}")


def quality(n: int, checkpoint: str, device: str, sets: list[str], prefix: Path) -> None:
    """Annotate each held-out set with its rubric, grade it against sim truth, print it beside the targets.

    `sets` names HELDOUT_SETS (empty: all). Each set's figures go to PREFIX_SET.json with what produced
    them (model, seeds, rubric fingerprint).
    """
    import json
    from dataclasses import asdict

    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.factory import default_checkpoint
    from spatial_mllm_ros.reward.evaluate import (
        REWARD_TARGETS,
        RewardEvaluation,
        annotate_and_grade,
        format_figures,
    )
    from spatial_mllm_ros.reward.heldout import HELDOUT_SETS, heldout_sim_bags

    checkpoint = checkpoint or str(default_checkpoint())
    if not Path(checkpoint, "config.json").exists():
        print(f"no model at {checkpoint}: the shipped model is not there yet (pass --checkpoint DIR)")
        return
    unknown = sorted(set(sets) - set(HELDOUT_SETS))
    if unknown:
        raise SystemExit(f"unknown held-out set(s) {unknown}; known: {', '.join(HELDOUT_SETS)}")
    tmp = Path(tempfile.mkdtemp(prefix="eval_reward_"))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for name in sets or HELDOUT_SETS:
        held = HELDOUT_SETS[name]
        rubric = load_rubric(ROOT / "config" / held.rubric)
        # the model's own preprocessor config caps its tiles (the shipped model: one 112-px tile)
        config = AnnotateConfig.from_rubric(rubric, ModelConfig(checkpoint=checkpoint, device=device))
        started = time.perf_counter()
        summary, ev = annotate_and_grade(heldout_sim_bags(tmp / name, n, held), config, tmp / name / "labels")
        wall = time.perf_counter() - started
        saved = Path(f"{prefix}_{name}.json")
        saved.write_text(json.dumps({
            "set": name, "rubric": held.rubric, "rubric_fingerprint": rubric.fingerprint,
            "checkpoint": checkpoint, "episodes": n, "first_seed": held.first_seed,
            "success": held.success, "failure": held.failure, "labels": summary.labels,
            "wall_s": round(wall, 1), "load": _load(), "evaluation": asdict(ev),
        }, indent=2) + "\n")
        print(f"\n{name} ({held.rubric}): {ev.n_success} successes ({held.success}), {ev.n_failure} "
              f"failures ({held.failure}), seeds from {held.first_seed}; model {checkpoint}; "
              f"{summary.labels} labels in {wall:.0f} s; load {_load()}")
        print(format_figures(ev, REWARD_TARGETS))
        print(f"-> {saved} (labels: {tmp / name / 'labels'})")
        shipped = prefix.parent / f"shipped_{name}.json"
        if shipped != saved and shipped.is_file():  # a retrained model: the shipped one's figures beside it
            before = json.loads(shipped.read_text())
            print(f"the shipped model on {before['episodes']} episodes of this set ({shipped}):")
            print(format_figures(RewardEvaluation.from_dict(before["evaluation"]), REWARD_TARGETS))


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
