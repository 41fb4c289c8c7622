"""`spatial-mllm train --recipe finetune` on the sim source's JSONL with the real shipped model.

It trains the form the runtime asks and scores (not the engine's sentences), holds out whole recordings,
stops at its time budget and resumes where it stopped, and leaves a model the runtime loads.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_mllm_ros.cli import build_parser, main
from spatial_mllm_ros.conventions import QuestionKind, task_description
from spatial_mllm_ros.model.factory import default_checkpoint
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.format import Sample, make_sample, sample_from_json
from spatial_mllm_ros.multispa.suite.sets import ENGINE_TASKS
from spatial_mllm_ros.multispa.train.asked import as_asked
from spatial_mllm_ros.multispa.train.config import DataSource, TrainConfig
from spatial_mllm_ros.multispa.train.errors import HeldOutSplitError
from spatial_mllm_ros.multispa.train.finetune import (
    FinetuneRecipe,
    check_apart,
    recording_of,
    run_finetune,
    split_by_recording,
)
from spatial_mllm_ros.multispa.train.loop import Trainer

STEPS = 6


@pytest.fixture(scope="module")
def sim_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sim source's samples over three scenes (episodes), the sub-tasks the shipped model was taught."""
    out = tmp_path_factory.mktemp("sim")
    args = ["data", "generate", "--source", "sim", "--sim-scenes", "3", "--out", str(out), "--quiet",
            "--tasks", ",".join(ENGINE_TASKS), "--max-per-scene", "3"]
    assert main(args) == 0
    return out / "samples.jsonl"


def _recipe(data: Path, out: Path, **kw: object) -> FinetuneRecipe:
    base = dict(data=[str(data)], output_dir=str(out), max_steps=STEPS, minutes=0.0, batch_size=4,
                eval_per_task=0, heldout_share=0.34, save_every=2, lr=3e-4)
    return FinetuneRecipe(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finetuned(sim_jsonl: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("finetune") / "run"
    return run_finetune(_recipe(sim_jsonl, out)), out


def _samples(path: Path) -> list[Sample]:
    return [sample_from_json(line) for line in path.read_text().splitlines()]


def _losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader((run / "loss.csv").open())]


def _answer_loss(checkpoint: Path, data: Path, out: Path) -> float:
    """Mean answer-token loss of a checkpoint on samples in the runtime's form (no training)."""
    config = TrainConfig(model=str(checkpoint), data=[DataSource(str(data))], output_dir=str(out),
                         tuning="full", max_tiles=1, gradient_checkpointing=False, batch_size=8,
                         prompt_style="runtime", progress=False, device="cpu")
    trainer = Trainer(config)
    trainer.model.eval()
    total = tokens = 0.0
    with torch.no_grad():
        for rows in trainer._batches(0):
            batch = trainer._micro_batch(rows)
            assert batch is not None
            n = float((batch["labels"][:, 1:] != -100).sum())
            total, tokens = total + n * float(trainer.model(**batch).loss), tokens + n
    return total / tokens


def test_a_sentence_answer_is_trained_as_the_runtime_asks_and_scores_it(sim_jsonl: Path) -> None:
    """Prompt: the kind's task description and the question; target: the bare value after the backtick
    the runtime forces, whose first token is the one its closed-set scoring reads."""
    sample = next(s for s in _samples(sim_jsonl) if s.kind is QuestionKind.DIRECTION)
    assert not sample.answer.startswith("`")  # the engine words it in a sentence: "Mostly `down`."
    asked = as_asked(sample)
    assert asked is not None and asked.meta == sample.meta and asked.image == sample.image
    value = re.findall(r"`([^`]*)`", sample.answer)[0]
    assert asked.answer == f"`{value}`"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint())
    prompts = PromptEncoder(tokenizer, "internvl")
    ids, labels = prompts.encode_training([16, 16], asked.prompt, asked.answer)
    runtime = prompts.encode([16, 16], task_description(sample.kind), sample.question, "`").ids
    assert ids[: len(runtime)] == runtime  # the runtime's prompt, its forced backtick included
    prefix = tokenizer("`", add_special_tokens=False)["input_ids"]
    option = tokenizer("`" + value, add_special_tokens=False)["input_ids"][len(prefix)]
    assert labels[len(runtime)] == option  # the first value token is the one scored
    still = make_sample("s", ["a.png", "b.png"], "How far did the gripper move?",
                        "The gripper did not move. Its displacement is `0`.", kind="distance")
    assert as_asked(still).answer == "`0`"  # type: ignore[union-attr]
    assert as_asked(replace(still, conversations=[still.conversations[0],
                                                  {"from": "gpt", "value": "no idea"}])) is None


def test_the_first_step_loss_is_low_because_the_convention_matches(finetuned: tuple[dict, Path],
                                                                    sim_jsonl: Path, tmp_path: Path) -> None:
    """The engine's sentences cost the shipped model ~11 nats a token; the runtime's form costs little."""
    summary, run = finetuned
    assert summary["first_loss"] < 3.0
    written = TrainConfig(data=[DataSource(str(sim_jsonl))], output_dir=str(tmp_path), tuning="full",
                          max_tiles=1, gradient_checkpointing=False, batch_size=4, progress=False)
    trainer = Trainer(written)
    trainer.model.eval()
    with torch.no_grad():
        as_written = float(trainer.model(**trainer._micro_batch(trainer._batches(0)[0])).loss)
    assert as_written > 8.0 > 3.0 * summary["first_loss"]


def test_a_few_steps_lower_the_held_out_loss(finetuned: tuple[dict, Path], tmp_path: Path) -> None:
    summary, run = finetuned
    assert summary["steps"] == STEPS and not summary["stopped_by_minutes"]
    held_out = run / "data" / "heldout.jsonl"
    before = _answer_loss(default_checkpoint(), held_out, tmp_path / "before")
    after = _answer_loss(Path(summary["model"]), held_out, tmp_path / "after")
    assert after < before


def test_held_out_recordings_are_not_trained_on_and_both_scores_are_reported(
    finetuned: tuple[dict, Path],
) -> None:
    summary, run = finetuned
    train, held = (_samples(run / "data" / f) for f in ("train.jsonl", "heldout.jsonl"))
    train_scenes, held_scenes = ({s.meta["scene"] for s in part} for part in (train, held))
    assert held_scenes and train_scenes and not train_scenes & held_scenes
    assert summary["heldout_recordings"] == sorted(f"scene {s}" for s in held_scenes)
    assert all((run / "data" / p).is_file() for s in train + held for p in s.image)
    report = json.loads((run / "eval" / "report.json").read_text())
    for name in ("before", "after"):
        scores = report["sets"][name]
        assert scores["total"] == len(held) and len(scores["overall_interval95"]) == 2
        assert all({"chance", "baseline", "interval95"} <= set(v) for v in scores["subtasks"].values())
        assert summary["heldout_accuracy"][name]["accuracy"] == pytest.approx(scores["overall"], abs=0.01)


def test_the_model_is_laid_out_as_the_shipped_one_and_the_runtime_loads_it(
    finetuned: tuple[dict, Path], sim_jsonl: Path,
) -> None:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel
    from spatial_mllm_ros.multispa.train.data import load_rgb

    summary, run = finetuned
    model = Path(summary["model"])
    shipped = {"config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json",
               "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "ood_stats.safetensors",
               "training.json"}
    assert shipped <= {p.name for p in model.iterdir()}
    assert json.loads((model / "training.json").read_text())["steps"] == STEPS
    assert len(list(run.glob("checkpoint-*"))) == 2  # the newest two are kept
    runtime = SpatialModel.load(ModelConfig(checkpoint=str(model), device="cpu"))
    try:
        sample = next(s for s in _samples(sim_jsonl) if s.task == "robot_gripper_direction")
        frames = [load_rgb(sim_jsonl.parent / p) for p in sample.image]
        answer = runtime.ask(frames, sample.question)
        assert answer.ok and answer.ood_score is not None
    finally:
        runtime.close()


def test_a_run_stopped_by_its_minutes_resumes_where_it_stopped(
    finetuned: tuple[dict, Path], sim_jsonl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spatial_mllm_ros.multispa.train.finetune import recipe

    _, uninterrupted = finetuned
    stopped = run_finetune(_recipe(sim_jsonl, tmp_path, minutes=1e-4))
    assert stopped["stopped_by_minutes"] and stopped["steps"] < STEPS
    asked = []
    answer = recipe.answer_with_model
    monkeypatch.setattr(recipe, "answer_with_model", lambda *a, **k: asked.append(a[1]) or answer(*a, **k))
    resumed = run_finetune(_recipe(sim_jsonl, tmp_path))
    assert resumed["steps"] == STEPS and not resumed["stopped_by_minutes"]
    assert resumed["resumed_at_step"] == stopped["steps"] > 0
    assert asked == [tmp_path / "final"]  # the starting model's answers are read back, not asked again
    # the same samples in the same order from the same weights; the rate differs by the (tiny) share of
    # the first run's budget spent before its first step
    losses = _losses(tmp_path)
    assert losses[0] == _losses(uninterrupted)[0]
    np.testing.assert_allclose(losses, _losses(uninterrupted), rtol=2e-3)


def _meta_sample(i: int, **meta: object) -> Sample:
    return make_sample(f"s{i}", ["a.png", "b.png"], "Did the gripper move left?", "`yes`", kind="yes_no",
                       meta=meta)


def test_the_split_holds_out_whole_bags_then_episodes_and_refuses_what_it_cannot_split() -> None:
    bags = [_meta_sample(i, bag=f"b{i % 5}", episode=i % 3, scene=f"b{i % 5}#{i % 3}") for i in range(60)]
    split = split_by_recording(bags, 0.4, seed=1)
    assert {recording_of(s) for s in split.held_out} == set(split.held_out_recordings)
    assert len(split.held_out_recordings) == 2 and len(split.train) + len(split.held_out) == 60
    assert not {s.meta["bag"] for s in split.train} & {s.meta["bag"] for s in split.held_out}
    assert split_by_recording(bags, 0.4, seed=1) == split  # drawn with the seed
    one_bag = [_meta_sample(i, bag="b0", episode=i % 4, scene=f"b0#{i % 4}") for i in range(20)]
    split = split_by_recording(one_bag, 0.25, seed=0)
    assert split.held_out_recordings == [f"scene b0#{split.held_out[0].meta['episode']}"]
    assert not {s.meta["episode"] for s in split.train} & {s.meta["episode"] for s in split.held_out}
    with pytest.raises(HeldOutSplitError, match="one recording"):
        split_by_recording([_meta_sample(i, scene="only") for i in range(5)], 0.2, 0)
    with pytest.raises(HeldOutSplitError, match="--eval"):
        split_by_recording([_meta_sample(0, scene="a"), _meta_sample(1)], 0.2, 0)
    with pytest.raises(HeldOutSplitError, match="both"):
        check_apart(bags[:30], bags[25:])
    check_apart(bags[:3], [_meta_sample(99)])  # a hand-made held-out set without names is taken on trust


def test_command_line_flags_reach_the_recipe_and_foreign_flags_are_refused() -> None:
    from spatial_mllm_ros.cli.train import config_from_args, finetune_from_args, recipe_from_args

    parser = build_parser()
    flags = ["train", "--recipe", "finetune", "--data", "a.jsonl", "--data", "b.jsonl", "--eval", "h.jsonl",
             "--from", "ckpt", "--output", "o", "--set", "lr=1e-4", "--set", "train=[vision]"]
    recipe = finetune_from_args(parser.parse_args(flags))
    assert (recipe.data, recipe.eval, recipe.checkpoint, recipe.output_dir) == (
        ["a.jsonl", "b.jsonl"], ["h.jsonl"], "ckpt", "o")
    assert (recipe.lr, recipe.train, recipe.device) == (1e-4, ("vision",), "cpu")
    assert 0 < recipe.minutes <= 15
    short = ["train", "--recipe", "finetune", "--data", "a", "--minutes", "5"]
    assert finetune_from_args(parser.parse_args(short)).minutes == 5.0
    with pytest.raises(ValueError, match="--data"):
        finetune_from_args(parser.parse_args(["train", "--recipe", "finetune"]))
    with pytest.raises(ValueError, match="--quick"):
        finetune_from_args(parser.parse_args(["train", "--recipe", "finetune", "--data", "a", "--quick"]))
    tiny = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--from", "ckpt"]))
    assert tiny.start_from == "ckpt"
    with pytest.raises(ValueError, match="--data"):
        recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--data", "a"]))
    with pytest.raises(ValueError, match="--from"):
        config_from_args(parser.parse_args(["train", "--config", "x.yaml", "--from", "ckpt"]))
    with pytest.raises(ValueError, match="--data"):
        config_from_args(parser.parse_args(["train", "--config", "x.yaml", "--data", "a"]))
