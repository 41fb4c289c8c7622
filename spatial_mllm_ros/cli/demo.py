"""`spatial-mllm demo`: live answers about scripted moves beside the simulation's truth, then reward labels.

The simulation and the spatial node talk over DDS; afterwards a recorded bag is annotated and graded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _pct(agree: int, n: int) -> str:
    return f"{agree}/{n} ({100 * agree / n:.0f}%)" if n else "n/a"


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spatial_mllm_ros.ros.demo import DemoOptions, run_demo

    if not args.verbose:  # node and library INFO lines would bury the table
        logging.getLogger().setLevel(logging.WARNING)
    options = DemoOptions(out=Path(args.out), checkpoint=args.checkpoint, device=args.device,
                          domain_id=args.domain_id, offline=not args.live_only,
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
    print("\noutputs:")
    for name, path in result.files.items():
        print(f"  {name:<16} {path}")
    n = s["questions"] + (result.offline.evaluation.direction_n if result.offline else 0)
    agreed = s["agree"] + (round((result.offline.evaluation.direction_agreement or 0) *
                                 result.offline.evaluation.direction_n) if result.offline else 0)
    print(f"\noverall agreement with truth: {_pct(agreed, n)} (reported, not asserted: "
          "a tiny model can be wrong)")
    return 0


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
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.set_defaults(func=_run)
