"""`spatial-mllm train --recipe tiny`: SpatialMLLM-tiny trained from scratch on simulated episodes on a CPU.

SpatialMLLM-tiny is an InternVL-architecture model (native transformers class).

Answer-token loss alone gives a from-scratch vision tower almost no gradient, and a from-scratch language
model learns to compare two frames' tokens only very slowly, so the recipe gives both dense targets:
  stage 1  the vision tower (sin-cos position init, layer scale 1.0) with small heads regresses per-patch
           segmentation classes and depth, and from every patch the camera-frame position of the
           gripper, of each object (one slot per colour) and of the table centre; batches are frame pairs
           of one episode, and the change of each position between the two frames is a loss of its own
           (questions need relative precision; scene-level biases cancel in a difference);
  stage 2  tower frozen, so every frame is encoded once up front: projector + LLM learn the questions,
           several per frame pair, every sub-task drawn equally often, with a curriculum from large to
           small motions; two training-only linear probes inside the LLM add dense targets: on the image
           tokens every entity's position (and, on the second frame's tokens, its change since the
           first), and at the position that predicts the answer, the asked entity's motion vector (its
           component along the asked direction for "did X move <direction>?", or the depth difference).
           The probes are dropped after training: the shipped model is the plain InternVL class.
The tokenizer is a byte-level BPE (digits split one by one) trained on the question templates.

run_recipe is the recipe's table of contents; each step lives in its own module of this package.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.model.config import SHIFT_EXPERT_DIR
from spatial_mllm_ros.model.loading import resolve_device
from spatial_mllm_ros.model.preprocess import ImageSpec
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.train.data import fit_ood_statistics
from spatial_mllm_ros.multispa.train.tiny.bank import QuestionBank
from spatial_mllm_ros.multispa.train.tiny.benchmark import write_benchmark
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import load_episode, read_truth, render_episodes
from spatial_mllm_ros.multispa.train.tiny.network import (
    make_model,
    make_tokenizer,
    question_corpus,
    save_model,
    start_model,
)
from spatial_mllm_ros.multispa.train.tiny.stage1 import pretrain_vision_cached
from spatial_mllm_ros.multispa.train.tiny.stage2 import (
    answer_accuracy,
    center_projector,
    encode_frames,
    train_questions,
)

log = logging.getLogger(__name__)
EVAL_QUESTIONS = 600  # held-out questions of the teacher-forced checks


def run_recipe(recipe: TinyRecipe) -> dict[str, Any]:
    """Render, build, train both stages, save the model and held-out benchmark (ship if asked); summarise."""
    device = _refuse_early(recipe)
    torch.set_num_threads(recipe.threads)
    start = time.monotonic()
    deadline = start + recipe.minutes * 60 if recipe.minutes > 0 else float("inf")
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    # episodes.py: simulated episodes on disk, training and held-out scenes
    t = time.perf_counter()
    train_dirs, bench_dirs = render_episodes(recipe, Path(recipe.episodes_dir or out / "episodes"))
    seconds["generate"] = time.perf_counter() - t

    # bank.py, network.py: questions from truth, then the tokenizer trained on them and the model
    # (the tokenizer comes first: it is the model's vocabulary)
    bank = QuestionBank([read_truth(p) for p in train_dirs], recipe.seed)
    bench_bank = QuestionBank([read_truth(p) for p in bench_dirs], recipe.bench_seed + 1)
    if recipe.start_from:
        model, tokenizer = start_model(recipe)
        model.to(device)
    else:
        tokenizer = make_tokenizer(question_corpus(bank.questions()), recipe.vocab_size)
        model = make_model(tokenizer, recipe).to(device)
    spec = ImageSpec.from_checkpoint("internvl", model.config, None, max_tiles=1)
    prompts = PromptEncoder(tokenizer, "internvl")
    bank.bind(prompts, spec.tokens_per_tile)
    bench_bank.bind(prompts, spec.tokens_per_tile)

    # episodes.py: frames as model tiles; stage2.py: the untrained model's teacher-forced check
    t = time.perf_counter()
    train_eps = [load_episode(p, spec) for p in train_dirs]
    bench_eps = [load_episode(p, spec) for p in bench_dirs]
    seconds["load"] = time.perf_counter() - t
    log.info(
        "%d train episodes (%d question groups), %d benchmark episodes",
        len(train_eps),
        len(bank.keys),
        len(bench_eps),
    )
    eval_items = random.Random(0).sample(bench_bank.items(), min(EVAL_QUESTIONS, len(bench_bank.items())))
    pad_id, img_id = int(tokenizer.pad_token_id), int(model.config.image_token_id)
    rows: list = []
    untrained = answer_accuracy(model, encode_frames(model, bench_eps), eval_items, pad_id, img_id)

    # stage1.py: the vision tower
    s1 = pretrain_vision_cached(model, train_eps, recipe, rows, out)
    seconds["stage1"] = s1["seconds"]

    # stage2.py (with probes.py): the questions, over frames encoded once
    t = time.perf_counter()
    train_feats, bench_feats = encode_frames(model, train_eps), encode_frames(model, bench_eps)
    seconds["encode"] = time.perf_counter() - t
    if not recipe.start_from:  # a trained projector already feeds the LLM what it learned on
        center_projector(model, train_feats)
    s2 = train_questions(
        model, train_eps, train_feats, bank, (bench_feats, eval_items), recipe, deadline, rows, pad_id,
        img_id, resume_dir=out / "stage2",
    )
    seconds["stage2"] = s2["seconds"]
    final = answer_accuracy(model, bench_feats, eval_items, pad_id, img_id)
    seconds["total"] = time.monotonic() - start

    summary = {
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_episodes": len(train_eps),
        "train_questions": len(bank.questions()),
        "bench_episodes": len(bench_eps),
        "bench_questions": len(bench_bank.questions()),
        "seconds": seconds,
        "stage1": s1,
        "stage2": s2,
        "teacher_forced_accuracy": {"untrained": untrained, "final": final},
        "hardware": _hardware(device),
    }
    # network.py, benchmark.py: the model (and an untrained twin), the held-out benchmark, the record
    model_dir = save_model(model, tokenizer, recipe, out / "model", summary)
    fit_ood_statistics(model_dir, [p for ep in train_eps for p in ep.frame_paths], device=str(device))
    untrained_model = make_model(tokenizer, recipe)
    save_model(untrained_model, tokenizer, recipe, out / "untrained", {"note": "same shape, not trained"})
    write_benchmark(bench_eps, bench_bank, out / "benchmark", recipe.bench_per_task, recipe.bench_seed)
    _write_record(summary, rows, out)
    if recipe.ship_to:
        _ship(model_dir, Path(recipe.ship_to))
    summary["model"] = str(model_dir)
    return summary


def _refuse_early(recipe: TinyRecipe) -> torch.device:
    """Refuse a tile off the targets' patch grid or a GPU that is not there, before anything is rendered."""
    if recipe.image_size != recipe.episode.grid * recipe.patch_size:
        raise ValueError(
            f"image_size {recipe.image_size} must be the targets' patch grid {recipe.episode.grid} x "
            f"patch_size {recipe.patch_size}"
        )
    return resolve_device(recipe.device)


def _hardware(device: torch.device) -> str:
    """Describe the run's hardware for the model card."""
    cpu = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, {cpu}" if device.type == "cuda" else cpu


def _write_record(summary: dict[str, Any], rows: list, out: Path) -> None:
    """Write summary.json, loss.csv and loss.png: what the run did, step by step."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with (out / "loss.csv").open("w") as fh:
        fh.write("stage,step,loss,seconds\n")
        fh.writelines(f"{s},{k},{v:.5f},{sec:.2f}\n" for s, k, v, sec in rows)
    _plot(rows, out / "loss.png")


def _plot(log_rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, stage, title in zip(
        axes, ("stage1", "stage2"), ("stage 1: vision (all losses)", "stage 2: answer loss")
    ):
        ys = np.array([r[2] for r in log_rows if r[0] == stage])
        if len(ys):
            k = max(1, len(ys) // 30)
            ax.plot(ys, alpha=0.3)
            ax.plot(np.arange(k - 1, len(ys)), np.convolve(ys, np.ones(k) / k, mode="valid"))
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ship(model_dir: Path, ship: Path) -> None:
    """Copy the trained model's files into `ship` (the assets folder when shipping)."""
    if (ship / SHIFT_EXPERT_DIR).is_dir():
        log.warning("%s keeps its %s/ folder, which answers the frames the previous model's OOD statistics "
                    "flagged: check the pair again (docs/experiments.md) or remove it",
                    ship, SHIFT_EXPERT_DIR)
    for f in model_dir.iterdir():
        ship.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, ship / f.name)
