"""`spatial-mllm evaluate`: the paper's metrics on a benchmark, for a checkpoint or any model's answers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spatial_mllm_ros.model.config import VISION_BACKENDS, ModelConfig, shift_expert_path


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
    what.add_argument(
        "--answers",
        help='JSONL of {"id": ..., "answer": raw text, "confidence"?, "probabilities"?} from any model; '
        "for several sets a directory of NAME/answers.jsonl",
    )
    sets = p.add_mutually_exclusive_group(required=True)
    sets.add_argument(
        "--benchmark",
        help="benchmark directory (benchmark.jsonl + images) or .jsonl; or a directory of "
        "NAME/benchmark.jsonl sets (a suite), each reported as a set",
    )
    sets.add_argument(
        "--set",
        action="append",
        metavar="NAME=PATH",
        dest="sets",
        help="a named benchmark set (repeat for several)",
    )
    p.add_argument(
        "--fit-temperature",
        metavar="SET",
        help="fit the temperature for closed-set probabilities (growing with the OOD score when answers "
        "carry one) on this held-out set and report every set's ECE after it too; writes calibration.json "
        "to the report directory",
    )
    p.add_argument(
        "--save-calibration", action="store_true",
        help="with --checkpoint and --fit-temperature: also write calibration.json next to the checkpoint's "
        "config.json, so the runtime applies it (never done silently: it changes the checkpoint)",
    )
    p.add_argument("--output", help="report directory (default: <benchmark or the sets' folder>/eval-<name>)")
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
    p.add_argument(
        "--vision-backend",
        default="torch",
        choices=[b for b in VISION_BACKENDS if b not in ("tensorrt", "torch-compile")],
        help="what encodes the frames (with --checkpoint); the onnxruntime ones run the graphs of "
        "`spatial-mllm export-vision`, onnxruntime-int8 its int8 form (default: %(default)s)",
    )
    p.add_argument(
        "--shift-expert",
        default="auto",
        help="with --checkpoint: the shift expert that answers frames out of distribution for the checkpoint "
        "(auto: its shift_expert/ folder where it has one; none: the checkpoint alone; or a checkpoint path)",
    )
    p.set_defaults(func=run)


def named_sets(args: argparse.Namespace) -> dict[str, Path]:
    """Name the sets asked for: --benchmark (one set or a suite folder) or repeated --set NAME=PATH."""
    from spatial_mllm_ros.multispa.evaluate import BenchmarkError, benchmark_sets

    if args.benchmark:
        return benchmark_sets(args.benchmark)
    sets: dict[str, Path] = {}
    for spec in args.sets:
        name, sep, path = spec.partition("=")
        if not (sep and name and path) or name in sets:
            raise BenchmarkError(f"--set {spec!r}: expected NAME=PATH with a name not used before")
        sets[name] = Path(path)
    return sets


def run(args: argparse.Namespace) -> int:
    """Answer (or read answers), score every set, write the report files, print the Markdown."""
    from spatial_mllm_ros.model.calibration import save_calibration
    from spatial_mllm_ros.multispa.evaluate import answer_sets, load_benchmark, read_answer_sets
    from spatial_mllm_ros.multispa.report import evaluate_sets, write_report

    expert = shift_expert_path(args.shift_expert, Path(args.checkpoint)) if args.checkpoint else None
    if args.save_calibration and expert is not None:
        raise ValueError("--save-calibration fits one model's temperature: evaluate the checkpoint alone "
                         f"(--shift-expert none); its expert alone with --checkpoint {expert}")
    paths = named_sets(args)
    benches = {name: load_benchmark(path) for name, path in paths.items()}
    source = Path(args.checkpoint or args.answers)
    answers = (
        answer_sets(
            benches,
            source,
            args.device,
            max_tiles=args.max_tiles,
            number_beam=args.number_beam,
            vision_backend=args.vision_backend,
            shift_expert=args.shift_expert,
        )
        if args.checkpoint
        else read_answer_sets(source, benches)
    )
    where = Path(args.benchmark or os.path.commonpath([p.resolve() for p in paths.values()]))
    where = where if where.is_dir() else where.parent
    title = args.title or f"{source.name} on {where.name}"
    report = evaluate_sets(benches, answers, title, args.fit_temperature)
    out = Path(args.output) if args.output else where / f"eval-{source.stem or source.name}"
    markdown = write_report(report, out, answers if args.checkpoint else None)
    print(markdown.read_text())
    print(f"report: {markdown.with_suffix('.json')}, heat map: {out / 'heatmap.png'}")
    if report.calibration and args.checkpoint and args.save_calibration:
        print(f"temperature saved with the checkpoint: {save_calibration(report.calibration, source)}")
    return 0
