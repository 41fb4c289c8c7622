"""`spatial-mllm demo`: live answers about scripted moves beside the simulation's truth, then reward labels.

The simulation and the spatial node talk over DDS; afterwards recorded bags are annotated with a gripper
rubric and an object rubric and graded; the object rubric's figures are printed with their intervals
and the targets they miss, whatever the model scores.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spatial_mllm_ros.demo.offline import OfflineResult


def _pct(agree: int, n: int) -> str:
    return f"{agree}/{n} ({100 * agree / n:.0f}%)" if n else "n/a"


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spatial_mllm_ros.ros.demo import DemoOptions, run_demo

    if not args.verbose:  # node and library INFO lines would bury the table
        logging.getLogger().setLevel(logging.WARNING)
    options = DemoOptions(out=Path(args.out), checkpoint=args.checkpoint, device=args.device,
                          domain_id=args.domain_id, offline=not args.live_only,
                          object_rubric=not args.no_object_rubric,
                          progress=not args.no_progress,
                          **({"rubric": Path(args.rubric)} if args.rubric else {}))
    result = run_demo(options, say=tqdm.write)
    s = result.summary
    print(f"\nlive: {s['questions']} questions, agreement with the simulation's truth "
          f"{_pct(s['agree'], s['questions'])}, direction questions "
          f"{_pct(s['direction_agree'], s['direction_questions'])}, answer latency p50 "
          f"{s['latency_p50_ms'] or 0:.0f} ms ({result.live_wall_s:.0f} s)")
    if result.offline is not None:
        ev, summ = result.offline.evaluation, result.offline.summary
        agree = "n/a" if ev.direction_agreement is None else f"{100 * ev.direction_agreement:.0f}%"
        print(f"annotator ({options.rubric.name}): {summ.episodes} episodes, {summ.labels} labels; "
              f"direction agreement with the /episode truth {agree} (n={ev.direction_n}) "
              f"({result.offline_wall_s:.0f} s)")
    if result.object_offline is not None:
        _print_object_stage(result.object_offline, result.object_wall_s)
    print("\noutputs:")
    for name, path in result.files.items():
        print(f"  {name:<22} {path}")
    graded = [o.evaluation for o in (result.offline, result.object_offline) if o is not None]
    n = s["questions"] + sum(ev.direction_n for ev in graded)
    agreed = s["agree"] + sum(round((ev.direction_agreement or 0) * ev.direction_n) for ev in graded)
    print(f"\noverall agreement with truth: {_pct(agreed, n)} (reported, not asserted: "
          "a tiny model can be wrong)")
    return 0


def _print_object_stage(stage: OfflineResult, wall_s: float) -> None:
    """Print the object rubric's figures with their intervals, and plainly the targets the model misses."""
    from spatial_mllm_ros.reward.evaluate import REWARD_TARGETS, format_figures, missed

    ev = stage.evaluation
    print(f"\nobject rubric ({stage.rubric.name}): {ev.n_success} pushes left, {ev.n_failure} failed grasps "
          f"(held-out scenes), {stage.summary.labels} labels ({wall_s:.0f} s)")
    print(format_figures(ev, REWARD_TARGETS))
    if missed(ev, REWARD_TARGETS):
        print("so this model's rewards for object motion do not tell these pushes from failed grasps; "
              "bench/bench_reward.py --eval 16 grades 16 episodes per rubric")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the CLI."""
    p = sub.add_parser("demo", help="end to end in simulation: live questions beside the truth, then a bag "
                       "annotated with reward labels")
    p.add_argument("--out", default="demo_out", help="output directory (default ./demo_out)")
    p.add_argument("--checkpoint", default="", help="model directory (default: the shipped SpatialMLLM-tiny)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--rubric", default="", help="rubric YAML for the annotator (default: "
                   "config/rubric_move_left.yaml)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID of the demo's nodes (default: "
                   "one of its own, derived from the process id)")
    p.add_argument("--live-only", action="store_true", help="skip the bag, annotation and grading")
    p.add_argument("--no-object-rubric", action="store_true", help="skip the object rubric's bag and grade")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.set_defaults(func=_run)
