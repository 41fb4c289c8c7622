"""`spatial-mllm evaluate`: the paper's metrics on a benchmark, for a checkpoint or any model's answers."""

from __future__ import annotations

import argparse
from pathlib import Path

from spatial_mllm_ros.model.config import ModelConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint or an answer file on a MultiSPA benchmark",
        description="Exact match for qualitative answers, relative L2 <= 20%% for scalars and "
        "vectors, 5%% of the image width for pixels; per-sub-task and Table 2 rows.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="model directory (our runtime answers every question)")
    what.add_argument("--answers", help='JSONL of {"id": ..., "answer": raw text} from any model')
    p.add_argument(
        "--benchmark", required=True, help="benchmark directory (benchmark.jsonl + images) or .jsonl"
    )
    p.add_argument("--output", help="report directory (default: <benchmark>/eval-<name>)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (with --checkpoint)")
    p.add_argument("--title", default="", help="report title")
    p.add_argument(
        "--max-tiles", type=int, help="tiles per frame (default: what the checkpoint was trained with)"
    )
    p.add_argument(
        "--number-beam",
        type=int,
        default=ModelConfig().number_beam,
        help="distances and depths: digit prefixes followed per level to weigh the whole value "
        "distribution (the answer likeliest within 20%%); 0: greedy digits (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Answer (or read answers), score, write scores.json / scores.md, print the Markdown."""
    from spatial_mllm_ros.multispa.evaluate import (
        answer_with_model,
        load_benchmark,
        read_answers,
        score_answers,
        write_report,
    )

    bench = load_benchmark(args.benchmark)
    source = Path(args.checkpoint or args.answers)
    answers = (
        answer_with_model(bench, source, args.device, max_tiles=args.max_tiles, number_beam=args.number_beam)
        if args.checkpoint
        else read_answers(source)
    )
    scores = score_answers(bench, answers)
    bench_dir = Path(args.benchmark) if Path(args.benchmark).is_dir() else Path(args.benchmark).parent
    out = Path(args.output) if args.output else bench_dir / f"eval-{source.stem or source.name}"
    write_report(
        scores, out, args.title or f"{source.name} on {bench_dir.name}", answers if args.checkpoint else None
    )
    print((out / "scores.md").read_text())
    print(f"report: {out}/scores.json")
    return 0
