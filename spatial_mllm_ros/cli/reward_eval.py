"""`spatial-mllm reward-eval`: grade annotate output against the truth in simulation bags."""

from __future__ import annotations

import argparse
from pathlib import Path

from spatial_mllm_ros.reward import RUBRIC_COPY, atomic_write_text, evaluate_dir, load_rubric


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    rubric = load_rubric(args.rubric or out / RUBRIC_COPY)
    ev = evaluate_dir(out, rubric, marker_topic=args.marker_topic, success_key=args.success_key)
    atomic_write_text(out / "eval.json", ev.to_json())
    print(f"episodes               {ev.episodes} ({ev.n_success} success, {ev.n_failure} failure)")
    print(f"direction agreement    {_fmt(ev.direction_agreement)}  (n={ev.direction_n})")
    print(f"distance error         {_fmt(ev.distance_mae_mm, '.1f')} mm, relative "
          f"{_fmt(ev.distance_rel_error)}  (n={ev.distance_n})")
    print(f"VOC success / failure  {_fmt(ev.voc_success)} / {_fmt(ev.voc_failure)}")
    print(f"success/failure AUC    {_fmt(ev.auc)}")
    print(f"-> {out / 'eval.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `reward-eval` to the CLI."""
    p = sub.add_parser("reward-eval", help="grade reward labels against simulation truth markers")
    p.add_argument("out", help="an annotate --out directory")
    p.add_argument("--rubric", default=None, help="rubric YAML (default: the copy annotate kept in OUT)")
    p.add_argument("--marker-topic", default="/episode", help="std_msgs/String topic with the truth markers")
    p.add_argument("--success-key", default="success", help="dotted key of the success flag in marker labels")
    p.set_defaults(func=_run)
