"""`spatial-mllm train --recipe finetune`: data-engine JSONL in, a fine-tuned checkpoint and its score out.

run_finetune's steps: split off held-out recordings (or take --eval), score the starting model on them,
train on the rest in the runtime's question form (train.asked) under a wall-clock cap, resuming a run
that stopped, save the model laid out as the shipped one (with the OOD statistics of its training
frames), score it again and write the before/after report of `spatial-mllm evaluate`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spatial_mllm_ros.model.factory import default_checkpoint
from spatial_mllm_ros.multispa.evaluate import (
    ANSWERS_FILE,
    Benchmark,
    Reply,
    answer_with_model,
    checkpoint_tiles,
    load_benchmark,
    read_answers,
    write_answers,
)
from spatial_mllm_ros.multispa.format import Sample, sample_to_json
from spatial_mllm_ros.multispa.report import EvaluationReport, evaluate_sets, write_report
from spatial_mllm_ros.multispa.train.config import DataSource, TrainConfig
from spatial_mllm_ros.multispa.train.data import fit_ood_statistics
from spatial_mllm_ros.multispa.train.finetune.config import FinetuneRecipe
from spatial_mllm_ros.multispa.train.finetune.split import (
    Split,
    check_apart,
    recording_of,
    split_by_recording,
)
from spatial_mllm_ros.multispa.train.loop import LOSS_CSV, Trainer, TrainResult

KEEP_CHECKPOINTS = 2  # the newest, and the one before it in case the newest was cut off mid-write
TRAIN_FILE, HELD_OUT_FILE = "train.jsonl", "heldout.jsonl"


def run_finetune(recipe: FinetuneRecipe) -> dict[str, Any]:
    """Split, score the start, train (resuming), save, score again; write and return the summary."""
    out = Path(recipe.output_dir)
    start = Path(recipe.checkpoint) if recipe.checkpoint else default_checkpoint()
    split = split_data(recipe)
    train_file = write_samples(split.train, out / "data" / TRAIN_FILE)
    bench = load_benchmark(write_samples(split.held_out, out / "data" / HELD_OUT_FILE))
    answers = {"before": answers_once(bench, start, out / "eval" / "before" / ANSWERS_FILE, recipe.device)}

    result = Trainer(train_config(recipe, start, train_file)).train()
    model = Path(result.output)
    fit_ood_statistics(model, [train_file], device=recipe.device)
    answers["after"] = answer_with_model(bench, model, recipe.device)
    report = evaluate_sets({k: bench for k in answers}, answers, f"{start.name} -> {out.name}: held-out")
    markdown = write_report(report, out / "eval", answers)

    summary = {
        "start": str(start),
        "model": str(model),
        "report": str(markdown),
        "train_samples": len(split.train),
        "heldout_samples": len(split.held_out),
        "heldout_recordings": split.held_out_recordings,
        **_training(result, out),
        "heldout_accuracy": _accuracy(report),
        "recipe": dataclasses.asdict(recipe),
    }
    text = json.dumps(summary, indent=2, default=str) + "\n"
    (out / "summary.json").write_text(text)
    (model / "training.json").write_text(text)  # the record travels with the model, as the shipped one's
    return summary


def split_data(recipe: FinetuneRecipe) -> Split:
    """Return the training and held-out samples: --eval's, apart from the training recordings, or split off.

    Held-out samples are capped per sub-task (eval_per_task); the rest of them train nothing either.
    """
    train = read_samples(recipe.data)
    if recipe.eval:
        held_out = read_samples(recipe.eval)
        check_apart(train, held_out)
        split = Split(train, held_out, sorted({n for s in held_out if (n := recording_of(s, False))}))
    else:
        split = split_by_recording(train, recipe.heldout_share, recipe.seed)
    split.held_out = per_task(split.held_out, recipe.eval_per_task, recipe.seed)
    return split


def read_samples(paths: Sequence[str]) -> list[Sample]:
    """Read JSONL files or benchmark folders, each sample's image paths made absolute."""
    samples = []
    for path in paths:
        bench = load_benchmark(path)
        samples += [dataclasses.replace(s, image=[str((bench.root / p).resolve()) for p in s.image])
                    for s in bench.samples]
    return samples


def per_task(samples: Sequence[Sample], limit: int, seed: int) -> list[Sample]:
    """Keep at most `limit` samples of each sub-task (0: all), drawn with `seed`, in their order."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_task[s.task].append(i)
    rng = random.Random(seed)
    drawn = (rng.sample(rows, limit) if 0 < limit < len(rows) else rows for rows in by_task.values())
    keep = {i for rows in drawn for i in rows}
    return [s for i, s in enumerate(samples) if i in keep]


def write_samples(samples: Sequence[Sample], path: Path) -> Path:
    """Write samples as JSONL with image paths relative to its folder (it can move with the images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = [dataclasses.replace(s, image=[os.path.relpath(p, path.parent) for p in s.image]) for s in samples]
    path.write_text("".join(sample_to_json(s) + "\n" for s in rel))
    return path


def answers_once(bench: Benchmark, checkpoint: Path, path: Path, device: str) -> dict[str, Reply]:
    """Ask the checkpoint every benchmark question, or read the answers back from a rerun's `path`."""
    if path.is_file():
        answers = read_answers(path)
        if set(answers) == {s.id for s in bench.samples}:
            return answers
    # the checkpoint alone: a fine-tuned model has no shift expert, so before and after compare like for like
    answers = answer_with_model(bench, checkpoint, device, shift_expert="none")
    write_answers(answers, path)
    return answers


def train_config(recipe: FinetuneRecipe, start: Path, train_file: Path) -> TrainConfig:
    """Return the trainer's settings: the recipe's parts train in full, in the runtime's question form."""
    return TrainConfig(
        model=str(start),
        data=[DataSource(str(train_file))],
        output_dir=recipe.output_dir,
        tuning="full" if "llm" in recipe.train else "frozen",
        train_projector="projector" in recipe.train,
        train_vision="vision" in recipe.train,
        lr=recipe.lr,
        warmup_ratio=recipe.warmup_ratio,
        epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        batch_size=recipe.batch_size,
        gradient_checkpointing=False,  # a small model: memory is not the limit, time is
        device=recipe.device,
        seed=recipe.seed,
        max_tiles=checkpoint_tiles(start),
        prompt_style="runtime",
        save_every=recipe.save_every,
        keep_checkpoints=KEEP_CHECKPOINTS,
        max_minutes=recipe.minutes,
        resume="auto",
        log_every=1,
    )


def _training(result: TrainResult, out: Path) -> dict[str, Any]:
    """Sum up the whole run's steps, time and losses (loss.csv holds earlier, stopped runs' steps too)."""
    losses = [float(row["loss"]) for row in csv.DictReader((out / LOSS_CSV).open())]
    return {
        "steps": result.steps,
        "resumed_at_step": result.steps - len(result.losses),  # 0: a fresh run
        "stopped_by_minutes": result.out_of_time,
        "training_minutes": round(result.seconds / 60, 2),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
    }


def _accuracy(report: EvaluationReport) -> dict[str, dict[str, Any]]:
    """Overall held-out accuracy and its 95 % Wilson interval, before and after."""
    return {
        name: {"accuracy": round(s.scores.overall, 2), "interval95": [round(x, 2) for x in s.scores.interval]}
        for name, s in report.sets.items()
    }
