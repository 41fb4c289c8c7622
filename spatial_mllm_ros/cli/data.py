"""`spatial-mllm data generate|benchmark|tasks`: the MultiSPA data engine from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spatial_mllm_ros.bags import TYPESTORES, Sampling, Split
from spatial_mllm_ros.multispa.benchmark import DEFAULT_PER_TASK, SIM_HELD_OUT_FIRST_SEED, build_benchmark
from spatial_mllm_ros.multispa.engine import GenerateConfig, Summary, generate, merge_summaries
from spatial_mllm_ros.multispa.errors import MultispaError
from spatial_mllm_ros.multispa.sources import SOURCES, RosbagConfig
from spatial_mllm_ros.multispa.sources.rosbag import DEFAULT_MAX_FRAMES, DEFAULT_SYNC_TOLERANCE_S
from spatial_mllm_ros.multispa.suite.sets import SUITE_PER_TASK, SUITE_SCENES, SUITES
from spatial_mllm_ros.multispa.tasks import META_ALIASES, TASKS
from spatial_mllm_ros.transforms import DEFAULT_MAX_GAP_S


def _scene_list(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


def _rosbag(args: argparse.Namespace) -> RosbagConfig | None:
    """Build the rosbag source's config from --root BAG... and its topic and frame flags (None otherwise)."""
    if args.source != "rosbag":
        return None
    count = args.count if args.count is not None or args.every or args.step else DEFAULT_MAX_FRAMES
    return RosbagConfig(
        bags=tuple(Path(r) for r in args.root or ()), image_topic=args.image_topic or "",
        base_frame=args.base_frame or "", gripper_frame=args.gripper_frame or "",
        depth_topic=args.depth_topic,
        object_frames=tuple(f for group in args.object_frames for f in group.split(",") if f),
        camera_info_topic=args.camera_info_topic, camera_frame=args.camera_frame,
        split=Split.parse(args.split),
        sampling=Sampling(every=args.every or 1, count=count, step_s=args.step),
        typestore=args.typestore, max_tf_gap_s=args.max_tf_gap, sync_tolerance_s=args.sync_tolerance,
    )


def _root(args: argparse.Namespace) -> Path | None:
    if args.source == "rosbag" or not args.root:
        return None
    if len(args.root) > 1:
        raise MultispaError(f"--source {args.source} reads one --root, got {len(args.root)}")
    return Path(args.root[0])


def _config(args: argparse.Namespace, sim_first_seed: int) -> GenerateConfig:
    return GenerateConfig(
        source=args.source, out=Path(args.out), root=_root(args), tasks=args.tasks,
        seed=args.seed, workers=args.workers, num_shards=args.num_shards, shard_index=args.shard_index,
        max_per_scene=args.max_per_scene, scenes=_scene_list(args.scenes),
        visibility_tolerance_m=args.visibility_tolerance, paper_exact=args.paper_exact,
        allow_pickle=args.allow_pickle,
        sim_scenes=args.sim_scenes if args.sim_scenes is not None else GenerateConfig.sim_scenes,
        sim_first_seed=sim_first_seed, rosbag=_rosbag(args), progress=not args.quiet,
    )


def _print_summary(counts: dict[str, int], extra: dict[str, object]) -> None:
    for task, n in counts.items():
        print(f"{task:<34} {n:>7}")
    print(json.dumps(extra))


def _print_run(summary: Summary, out: str) -> None:
    _print_summary(summary.per_task, {"samples": summary.samples, "scenes_done": summary.scenes_done,
                                      "scenes_skipped": summary.scenes_skipped,
                                      "skip_reasons": summary.skip_reasons, "out": out})


def _generate(args: argparse.Namespace) -> int:
    first = args.sim_first_seed if args.sim_first_seed is not None else 0
    _print_run(generate(_config(args, first)), args.out)
    return 0


def _suite(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.multispa.suite import MANIFEST_FILE, SuiteConfig, SuiteError, write_suite

    if args.source != "sim":
        raise SuiteError(f"--suite writes simulated sets: use --source sim, not {args.source}")
    given = {"scenes": args.sim_scenes, "per_task": args.per_task, "first_seed": args.sim_first_seed}
    config = SuiteConfig(
        out=Path(args.out),
        suite=args.suite,
        sets=tuple(s for s in (args.sets or "").split(",") if s),
        bench_seed=args.seed,
        engine_max_per_scene=args.max_per_scene,
        workers=args.workers,
        **{k: v for k, v in given.items() if v is not None},
    )
    manifest = write_suite(config)
    for r in manifest.sets:
        first, last = r.seeds
        print(f"{r.name:<20} seeds {first}-{last}  {r.episodes:>4} episodes  {r.questions:>5} questions")
    print(json.dumps({"sets": len(manifest.sets), "out": str(config.out / MANIFEST_FILE)}))
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    if args.suite:
        return _suite(args)
    if args.sets:
        raise ValueError("--sets names sets of a suite: give --suite too")
    first = args.sim_first_seed if args.sim_first_seed is not None else SIM_HELD_OUT_FIRST_SEED
    per_task = args.per_task if args.per_task is not None else DEFAULT_PER_TASK
    summary = build_benchmark(_config(args, first), per_task=per_task)
    _print_summary(summary.per_task, {"short": summary.short, "scenes": summary.scenes,
                                      "out": str(Path(args.out) / "benchmark.jsonl")})
    return 0


def _summary(args: argparse.Namespace) -> int:
    summary = merge_summaries(Path(args.out))
    if args.plot:
        from spatial_mllm_ros.multispa.plots import plot_label_balance

        print(f"plot: {plot_label_balance(summary, Path(args.out) / 'summary-all.png')}")
    _print_run(summary, str(Path(args.out) / "summary-all.json"))
    return 0


def _tasks(args: argparse.Namespace) -> int:
    for spec in TASKS.values():
        print(f"{spec.name:<34} {spec.family:<16} {spec.kind.value:<11} {spec.description}")
    print("\nMeta's Multi-SpatialMLLM names, accepted by --tasks:")
    for alias, names in META_ALIASES.items():
        print(f"{alias:<40} -> {', '.join(names)}")
    return 0


def _common(p: argparse.ArgumentParser, default_tasks: str, default_max: int) -> None:
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--root", nargs="+", metavar="PATH",
                   help="data root (scannet export / tapvid3d npz tree); rosbag: bags (rosbag2 directories, "
                        ".mcap/.db3 files) or folders of bags; not needed for sim")
    p.add_argument("--out", required=True, help="output directory (JSONL, images, manifest, summary)")
    p.add_argument("--tasks", default=default_tasks,
                   help="comma list of sub-tasks, families, 'benchmark' or 'all' (see `data tasks`)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="scene-level worker processes")
    p.add_argument("--num-shards", type=int, default=1, help="split the scene list over this many jobs")
    p.add_argument("--shard-index", type=int, default=0,
                   help="this job's shard (0-based; e.g. $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--max-per-scene", type=int, default=default_max,
                   help="samples per sub-task per scene (max)")
    p.add_argument("--scenes", help="file with one scene id per line (a split list, e.g. scannetv2_val.txt)")
    p.add_argument("--visibility-tolerance", type=float, default=None, metavar="M",
                   help="depth-test tolerance in metres (default: the paper's strict test)")
    p.add_argument("--paper-exact", action="store_true",
                   help="invert poses with the full matrix inverse as Meta's engine does (default: the rigid "
                        "R^T inverse; they differ by ~1e-6 on 6-decimal pose files)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read TAPVid-3D images_jpeg_bytes stored as pickled object arrays (trusted only)")
    p.add_argument("--sim-scenes", type=int,
                   help=f"simulation: number of scenes (default 8; a suite: {SUITE_SCENES} per set)")
    p.add_argument("--sim-first-seed", type=int, default=None,
                   help=f"simulation: first seed (generate: 0, benchmark: {SIM_HELD_OUT_FIRST_SEED})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    bag = p.add_argument_group("rosbag source (a robot's recordings: images, CameraInfo, /tf, /tf_static)")
    bag.add_argument("--image-topic", help="colour images (sensor_msgs/Image or .../compressed)")
    bag.add_argument("--base-frame", help="the robot's fixed frame (z up) motions are measured in: base_link")
    bag.add_argument("--gripper-frame", help="TF frame of the gripper (tool centre point), e.g. tool0")
    bag.add_argument("--depth-topic", default="",
                     help="depth registered to the colour images (16UC1 mm / 32FC1 m): adds the depth tasks")
    bag.add_argument("--object-frames", nargs="+", default=[], metavar="FRAME",
                     help="TF frames of objects (space or comma separated): adds object-movement questions")
    bag.add_argument("--camera-info-topic", default="",
                     help="sensor_msgs/CameraInfo (default: camera_info beside the image topic)")
    bag.add_argument("--camera-frame", default="",
                     help="the camera's optical frame (default: the images' header frame_id)")
    bag.add_argument("--split", default="whole",
                     help="episodes of a bag, as annotate: whole, gap[:S], marker[:TOPIC], intervals:FILE")
    bag.add_argument("--every", type=int, default=None, help="use every k-th frame of an episode")
    bag.add_argument("--count", type=int, default=None,
                     help=f"use N frames spread over each episode (default {DEFAULT_MAX_FRAMES}, unless "
                          "--every or --step)")
    bag.add_argument("--step", type=float, default=None, help="use one frame per STEP seconds")
    bag.add_argument("--typestore", default="jazzy", choices=sorted(TYPESTORES),
                     help="message types for bags without embedded definitions (Humble-era)")
    bag.add_argument("--max-tf-gap", type=float, default=DEFAULT_MAX_GAP_S, metavar="S",
                     help="a pose between two /tf samples further apart than this is stale (frame skipped)")
    bag.add_argument("--sync-tolerance", type=float, default=DEFAULT_SYNC_TOLERANCE_S, metavar="S",
                     help="a depth image belongs to a colour image whose stamp is within this")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data` (generate, benchmark, tasks) to the CLI."""
    p = sub.add_parser("data", help="MultiSPA data engine: generate training data, build the benchmark")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    gen = dsub.add_parser("generate", help="generate samples from scannet, tapvid3d, sim scenes or rosbags")
    _common(gen, "all", 10)
    gen.set_defaults(func=_generate)
    bench = dsub.add_parser("benchmark", help="balanced N-per-sub-task evaluation split from held-out scenes")
    _common(bench, "benchmark", 40)
    bench.add_argument("--per-task", type=int,
                       help=f"samples per sub-task (default {DEFAULT_PER_TASK}; a suite: {SUITE_PER_TASK})")
    bench.add_argument("--suite", choices=SUITES,
                       help="write a suite of named held-out sets from unseen seeds, each "
                            "OUT/NAME/benchmark.jsonl, and OUT/suite.json (shifts: one appearance or task "
                            "change per set); --sim-scenes, --per-task, --sim-first-seed and --seed apply "
                            "to every set")
    bench.add_argument("--sets", help="with --suite: a comma list of its sets to write (default: all)")
    bench.set_defaults(func=_benchmark)
    merged = dsub.add_parser("summary", help="merge the summaries of all shards of an output directory")
    merged.add_argument("--out", required=True)
    merged.add_argument("--plot", action="store_true", help="also draw summary-all.png (label balance)")
    merged.set_defaults(func=_summary)
    tasks = dsub.add_parser("tasks", help="list the sub-task registry")
    tasks.set_defaults(func=_tasks)
