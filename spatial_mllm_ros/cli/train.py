"""`spatial-mllm train`: fine-tune a checkpoint on MultiSPA JSONL (`--config`), or run the tiny recipe."""

from __future__ import annotations

import argparse
import json
import os


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    p = sub.add_parser(
        "train",
        help="train on MultiSPA JSONL (paper recipe by default) or --recipe tiny",
        description="Runs under plain python, torchrun (DDP) and accelerate launch alike.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="TrainConfig YAML (see config/train_*.yaml)")
    what.add_argument("--recipe", choices=("tiny",), help="train SpatialMLLM-tiny from scratch on sim data")
    p.add_argument("--output", help="output directory (overrides the config / recipe default)")
    p.add_argument("--resume", help="'auto' or a checkpoint directory")
    p.add_argument("--max-steps", type=int, help="override the number of optimizer steps")
    p.add_argument("--minutes", type=float, default=None, help="tiny recipe: wall-clock budget")
    p.add_argument("--quick", action="store_true", help="tiny recipe: a few-minute smoke run")
    p.add_argument("--ship-to", help="tiny recipe: also copy the trained model here (e.g. the assets folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, call the library, print a one-line JSON summary."""
    if args.recipe == "tiny":
        from spatial_mllm_ros.multispa.train.tiny import TinyRecipe, run_recipe

        recipe = TinyRecipe.quick() if args.quick else TinyRecipe()
        if args.output:
            recipe.output_dir = args.output
        if args.minutes is not None:
            recipe.minutes = args.minutes
        if args.ship_to:
            recipe.ship_to = args.ship_to
        print(json.dumps(run_recipe(recipe), indent=2, default=str))
        return 0
    from spatial_mllm_ros.multispa.train.config import TrainConfig
    from spatial_mllm_ros.multispa.train.loop import train

    config = TrainConfig.from_yaml(args.config)
    if args.output:
        config.output_dir = args.output
    if args.resume:
        config.resume = args.resume
    if args.max_steps:
        config.max_steps = args.max_steps
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary per run, not per process
        print(
            json.dumps(
                {
                    "steps": result.steps,
                    "final_loss": result.final_loss,
                    "samples": result.samples,
                    "samples_per_s": round(result.samples_per_s, 2),
                    "tokens_per_s": round(result.tokens_per_s, 1),
                    "skipped": result.skipped,
                    "output": result.output,
                }
            )
        )
    return 0
