"""`spatial-mllm annotate`: reward labels for rosbags from a rubric of spatial questions."""

from __future__ import annotations

import argparse
import sys

from spatial_mllm_ros.reward import AnnotateConfig, annotate_to_dir, load_rubric


def _run(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.model.config import ModelConfig

    rubric = load_rubric(args.rubric)
    tiles = {"max_tiles": args.max_tiles} if args.max_tiles else {}
    config = AnnotateConfig.from_rubric(
        rubric,
        ModelConfig(checkpoint=args.checkpoint, adapter=args.adapter, device=args.device, **tiles),
        split=args.split,
        every=args.every,
        count=args.count,
        step_s=args.step,
        image_topic=args.image_topic,
        typestore=args.typestore,
    )
    summary = annotate_to_dir(
        args.bags, config, args.out, jobs=args.jobs, ray_address=args.ray, write_bag=args.write_bag,
        show_progress=not args.no_progress, plots=not args.no_plots,
    )
    print(f"{summary.episodes} episodes ({summary.resumed} resumed), {summary.labels} labels "
          f"-> {summary.out}")
    if summary.out_of_distribution:
        print(f"WARNING: {summary.out_of_distribution} episode(s) look out of distribution (ood_score > 1 in "
              "episodes.csv): the model has not seen frames like these, so their rewards may be wrong",
              file=sys.stderr)
    for path in summary.reward_bags:
        print(f"reward bag: {path}")
    for bag in summary.failed:
        print(f"FAILED {bag.error}", file=sys.stderr)
    return 1 if summary.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `annotate` to the CLI."""
    p = sub.add_parser("annotate", help="score robot episodes in rosbags as reward labels")
    p.add_argument("bags", nargs="+", help="rosbag2 directories or single .mcap/.db3 files")
    p.add_argument("--rubric", required=True, help="rubric YAML (see config/rubric_*.yaml)")
    p.add_argument("--out", required=True, help="output directory (re-running the same command resumes)")
    p.add_argument("--image-topic", default=None, help="image topic (default: the rubric's, else detected)")
    p.add_argument("--split", default=None,
                   help="whole | gap[:SECONDS] | marker[:TOPIC] | intervals:FILE.csv")
    p.add_argument("--every", type=int, default=None, help="use every k-th frame")
    p.add_argument("--count", type=int, default=None, help="use N frames spread over each episode")
    p.add_argument("--step", type=float, default=None, help="use one frame per STEP seconds")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, each loading the model once and running cores/N torch threads; "
                        "they end with this process, kill -9 included (with --ray local: its CPUs)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run bags as Ray tasks ('local' or ray://...)")
    p.add_argument("--write-bag", action="store_true", help="also write a bag copy with /reward topics")
    p.add_argument("--checkpoint", default="", help="model directory (default: the shipped tiny model)")
    p.add_argument("--adapter", default="", help="LoRA adapter directory")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--max-tiles", type=int, default=None,
                   help="InternVL tiles per frame (default: ModelConfig's; the shipped tiny model: 1)")
    p.add_argument("--typestore", default="jazzy", choices=("jazzy", "humble"),
                   help="message types for bags without embedded definitions (Humble-era)")
    p.add_argument("--no-plots", action="store_true", help="skip the per-episode PNGs (faster at scale)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
