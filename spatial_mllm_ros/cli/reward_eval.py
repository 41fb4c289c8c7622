"""`spatial-mllm reward-eval`: grade annotate output against the truth in simulation bags."""

from __future__ import annotations

import argparse
from pathlib import Path

from spatial_mllm_ros.reward import RUBRIC_COPY, atomic_write_text, evaluate_dir, load_rubric
from spatial_mllm_ros.reward.evaluate import EVAL_NAME, format_figures


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    rubric = load_rubric(args.rubric or out / RUBRIC_COPY)
    ev = evaluate_dir(out, rubric, marker_topic=args.marker_topic, success_key=args.success_key)
    atomic_write_text(out / EVAL_NAME, ev.to_json())
    print(f"{rubric.name}: {ev.episodes} episodes ({ev.n_success} success, {ev.n_failure} failure)")
    print(format_figures(ev))
    print(f"-> {out / EVAL_NAME}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `reward-eval` to the CLI."""
    p = sub.add_parser("reward-eval", help="grade reward labels against simulation truth markers")
    p.add_argument("out", help="an annotate --out directory")
    p.add_argument("--rubric", default=None, help="rubric YAML (default: the copy annotate kept in OUT)")
    p.add_argument("--marker-topic", default="/episode", help="std_msgs/String topic with the truth markers")
    p.add_argument("--success-key", default="success", help="dotted key of the success flag in marker labels")
    p.set_defaults(func=_run)
