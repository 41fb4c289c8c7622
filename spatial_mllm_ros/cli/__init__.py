"""The `spatial-mllm` command: one subcommand per job, each a thin layer over library code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from spatial_mllm_ros import __version__

# Subcommand modules, each exposing `register(subparsers)`; imported lazily so `--version` stays instant.
COMMAND_MODULES: tuple[str, ...] = (
    "spatial_mllm_ros.cli.doctor",
    "spatial_mllm_ros.cli.ask", "spatial_mllm_ros.cli.export_vision", "spatial_mllm_ros.cli.ood",
    "spatial_mllm_ros.cli.annotate", "spatial_mllm_ros.cli.reward_eval",
    "spatial_mllm_ros.cli.bringup",
    "spatial_mllm_ros.cli.train", "spatial_mllm_ros.cli.evaluate",
    "spatial_mllm_ros.cli.sim",
    "spatial_mllm_ros.cli.data",
    "spatial_mllm_ros.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from every registered subcommand module."""
    parser = argparse.ArgumentParser(
        prog="spatial-mllm",
        description="Multi-frame spatial questions for robots: node, data engine, training, rewards.",
    )
    parser.add_argument("--version", action="version", version=f"spatial-mllm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors print one line (use -v for the traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI prints the reason, not a traceback, unless asked
        if args.verbose:
            raise
        print(f"spatial-mllm {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
