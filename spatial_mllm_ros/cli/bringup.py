"""`spatial-mllm bringup`: run bringup.launch.py's node (or sim.launch.py's two) in one process."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.ros.bringup import bringup, default_params_file

    return bringup(args.params_file or default_params_file(), sim=args.sim, namespace=args.namespace,
                   image_topic=args.image_topic, use_sim_time=args.use_sim_time, log_level=args.log_level)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bringup` to the CLI."""
    p = sub.add_parser("bringup", help="run the spatial node (and with --sim the simulation) until Ctrl-C")
    p.add_argument("--params-file", default="", help="YAML with /**: ros__parameters: (default: the "
                   "installed config/spatial_mllm.yaml)")
    p.add_argument("--sim", action="store_true", help="also run the MuJoCo world's live node; the spatial "
                   "node watches /camera/front/image_raw on sim time")
    p.add_argument("--namespace", default="", help="namespace of the spatial node")
    p.add_argument("--image-topic", default="", help="remap the node's `image` input to this topic")
    p.add_argument("--use-sim-time", action="store_true", help="use /clock time")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error", "fatal"))
    p.set_defaults(func=_run)
