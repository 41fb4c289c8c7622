"""`spatial-mllm train`: a checkpoint on MultiSPA JSONL (`--config`), or a recipe (`--recipe finetune|tiny`).

`--recipe finetune --data TRAIN.jsonl` is the one command from the data engine's output to a checkpoint
that the node and the annotator can load; `--config` is the general trainer it is built on.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spatial_mllm_ros.multispa.train.config import TrainConfig
    from spatial_mllm_ros.multispa.train.finetune import FinetuneRecipe
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe

FINETUNE_FLAGS = {"data": "--data", "eval": "--eval"}  # dest -> flag
RECIPE_FLAGS = {"start": "--from"}
TINY_FLAGS = {"quick": "--quick", "ship_to": "--ship-to"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    p = sub.add_parser(
        "train",
        help="train on MultiSPA JSONL: --recipe finetune (the shipped model on your data), --config, "
        "or --recipe tiny (from scratch)",
        description="Runs under plain python, torchrun (DDP) and accelerate launch alike.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="TrainConfig YAML (see config/train_*.yaml)")
    what.add_argument(
        "--recipe",
        choices=("finetune", "tiny"),
        help="finetune: SpatialMLLM-tiny (or --from) on --data, scored on held-out recordings before and "
        "after; tiny: SpatialMLLM-tiny from scratch on sim data",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="JSONL",
        help="finetune: training samples (`spatial-mllm data generate` output; repeat for several)",
    )
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="JSONL",
        help="finetune: held-out samples from other recordings (default: a share of --data's recordings, "
        "by bag / episode / scene)",
    )
    p.add_argument(
        "--from",
        dest="start",
        metavar="CHECKPOINT",
        help="finetune: model to start from (default: the shipped one); tiny: a checkpoint of the recipe "
        "whose weights start the run (default: from scratch), e.g. at a finer patch grid",
    )
    p.add_argument("--output", help="output directory (overrides the config / recipe default)")
    p.add_argument("--resume", help="--config only: 'auto' or a checkpoint directory")
    p.add_argument(
        "--max-steps",
        type=int,
        help="override the number of optimizer steps (tiny recipe: its question stage's steps)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock budget in minutes (0: none): finetune and --config: training time (finetune "
        "default 15); tiny: may end the question stage early",
    )
    p.add_argument(
        "--device",
        help="cpu, cuda[:N] or auto (overrides the config's device; the recipes' default is cpu)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="recipes: any TinyRecipe / FinetuneRecipe field, dotted for nested ones (e.g. episode.grid=12)",
    )
    p.add_argument("--quick", action="store_true", help="tiny recipe: a few-minute smoke run")
    p.add_argument("--ship-to", help="tiny recipe: also copy the trained model here (e.g. the assets folder)")
    p.set_defaults(func=run)


def refuse_flags(args: argparse.Namespace, flags: dict[str, str], what: str) -> None:
    """Raise ValueError naming the given flags (dest -> flag) that cannot apply to `what`."""
    given = [flag for dest, flag in flags.items() if getattr(args, dest)]
    if given:
        raise ValueError(f"{', '.join(given)} cannot apply to {what}")


def recipe_from_args(args: argparse.Namespace) -> TinyRecipe:
    """Build the tiny recipe the flags ask for; a flag that cannot apply to it is an error, not ignored."""
    from spatial_mllm_ros.config import from_dict, parse_assignments
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe

    refuse_flags(args, FINETUNE_FLAGS, "--recipe tiny")
    if args.resume:  # the recipe resumes on its own
        raise ValueError("--resume is for --config runs; a rerun of --recipe tiny in the same --output "
                         "reuses its rendered episodes and stage-1 tower and resumes stage 2 by itself")
    recipe = TinyRecipe.quick() if args.quick else TinyRecipe()
    recipe = from_dict(TinyRecipe, parse_assignments(args.set), base=recipe)  # flags below win
    if args.max_steps:  # a step count, unlike --minutes, gives the same run on a slower machine
        recipe.stage2_steps = args.max_steps
    if args.output:
        recipe.output_dir = args.output
    if args.minutes is not None:
        recipe.minutes = args.minutes
    if args.ship_to:
        recipe.ship_to = args.ship_to
    if args.device:
        recipe.device = args.device
    if args.start:
        recipe.start_from = args.start
    return recipe


def finetune_from_args(args: argparse.Namespace) -> FinetuneRecipe:
    """Build the fine-tune recipe from --set and the named flags (which win); every value is checked."""
    from spatial_mllm_ros.config import from_dict, parse_assignments
    from spatial_mllm_ros.multispa.train.finetune import FinetuneRecipe

    refuse_flags(args, TINY_FLAGS, "--recipe finetune")
    if args.resume:
        raise ValueError(
            "--resume is for --config runs; a rerun of --recipe finetune with the same --output resumes "
            "from its newest checkpoint by itself"
        )
    named = {
        "data": args.data,
        "eval": args.eval,
        "checkpoint": args.start,
        "output_dir": args.output,
        "minutes": args.minutes,
        "max_steps": args.max_steps,
        "device": args.device,
    }
    given = {k: v for k, v in named.items() if v not in (None, [])}
    recipe = from_dict(FinetuneRecipe, {**parse_assignments(args.set), **given})
    if not recipe.data:
        raise ValueError("--recipe finetune needs --data TRAIN.jsonl (from `spatial-mllm data generate`)")
    return recipe


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Read --config and apply the flags that override it."""
    from spatial_mllm_ros.multispa.train.config import TrainConfig

    if args.set:
        raise ValueError("--set is for the recipes; a --config run's settings are its YAML file")
    foreign = {**FINETUNE_FLAGS, **TINY_FLAGS, **RECIPE_FLAGS}
    refuse_flags(args, foreign, "--config (its data and model are in the YAML file)")
    config = TrainConfig.from_yaml(args.config)
    if args.output:
        config.output_dir = args.output
    if args.resume:
        config.resume = args.resume
    if args.max_steps:
        config.max_steps = args.max_steps
    if args.device:
        config.device = args.device
    if args.minutes is not None:
        config.max_minutes = args.minutes
    return config


def run(args: argparse.Namespace) -> int:
    """Parse, call the library, print a one-line JSON summary."""
    if args.recipe == "tiny":
        from spatial_mllm_ros.multispa.train.tiny import run_recipe

        print(json.dumps(run_recipe(recipe_from_args(args)), indent=2, default=str))
        return 0
    if args.recipe == "finetune":
        from pathlib import Path

        from spatial_mllm_ros.multispa.train.finetune import run_finetune

        summary = run_finetune(finetune_from_args(args))
        print(Path(summary["report"]).read_text())
        print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}, indent=2, default=str))
        return 0
    from spatial_mllm_ros.multispa.train.loop import train

    result = train(config_from_args(args))
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
