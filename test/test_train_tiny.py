"""The shipped SpatialMLLM-tiny: size limits, offline reload through the runtime, and its recorded accuracy
reproduced on the committed benchmark subset (test/data/spatialmllm_tiny_subset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatial_mllm_ros.model.config import SHIFT_EXPERT_DIR
from spatial_mllm_ros.model.factory import default_checkpoint
from spatial_mllm_ros.multispa.evaluate import answer_with_model, load_benchmark, score_answers

SUBSET = Path(__file__).parent / "data" / "spatialmllm_tiny_subset"


def test_shipped_model_fits_the_limits() -> None:
    ckpt = default_checkpoint()
    weights = ckpt / "model.safetensors"
    assert weights.is_file(), f"shipped model missing at {ckpt}"
    assert weights.stat().st_size <= 40 * 2**20
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model_type"] == "internvl"
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.py"))  # safetensors only, no remote code
    assert (ckpt / "MODEL_CARD.md").is_file()
    expert = ckpt / SHIFT_EXPERT_DIR  # the shift expert ships inside it, with the same limits
    assert (expert / "model.safetensors").stat().st_size <= 40 * 2**20
    assert json.loads((expert / "config.json").read_text())["model_type"] == "internvl"
    assert (expert / "calibration.json").is_file() and (ckpt / "ood_stats.safetensors").is_file()
    assert not list(expert.glob("*.bin")) and not list(expert.glob("*.py"))


def test_shipped_model_reproduces_its_recorded_accuracy_offline() -> None:
    expected = json.loads((SUBSET / "expected.json").read_text())
    bench = load_benchmark(SUBSET)
    answers = answer_with_model(bench, default_checkpoint(), device="cpu", progress=False)
    scores = score_answers(bench, answers)
    got = {k: [s.correct, s.total] for k, s in scores.subtasks.items()}
    assert got == expected["subtasks"]
    assert scores.overall == pytest.approx(expected["overall"])


@pytest.mark.slow
def test_quick_recipe_runs_end_to_end(tmp_path: Path) -> None:
    """`spatial-mllm train --recipe tiny --quick`: render, three stages, save, benchmark (a few minutes).

    A second seed trains differently but writes the same held-out questions, so runs of any seed compare.
    """
    from dataclasses import replace

    from spatial_mllm_ros.cli import main
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe, run_recipe

    assert main(["train", "--recipe", "tiny", "--quick", "--output", str(tmp_path), "--device", "auto"]) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "ood_stats.safetensors").is_file()
    assert (tmp_path / "loss.png").is_file()
    bench = (tmp_path / "benchmark" / "benchmark.jsonl").read_text()
    other = tmp_path / "seed1"
    episodes = str(tmp_path / "episodes")  # rendered once, by the first run
    run_recipe(replace(TinyRecipe.quick(), output_dir=str(other), episodes_dir=episodes, seed=1))
    assert (other / "benchmark" / "benchmark.jsonl").read_text() == bench
    weights = [(d / "model" / "model.safetensors").read_bytes() for d in (tmp_path, other)]
    assert weights[0] != weights[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # five runs of the quick recipe
def test_stage2_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped in stage 2 and run again goes on from its last save to the same weights (3-4 min)."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe, run_recipe
    from spatial_mllm_ros.multispa.train.tiny.bank import QuestionBank

    base = replace(TinyRecipe.quick(), episodes_dir=str(tmp_path / "episodes"), minutes=0, stage2_steps=12,
                   save_every=5, eval_every=0)
    whole = run_recipe(replace(base, output_dir=str(tmp_path / "whole")))
    assert "resumed_at_step" not in whole["stage2"]
    draws, real = [], QuestionBank.sample

    def stop_at_the_ninth_step(self: QuestionBank, *args: object) -> list:  # as Ctrl-C would
        draws.append(1)
        if len(draws) > 8:
            raise KeyboardInterrupt
        return real(self, *args)

    cut = replace(base, output_dir=str(tmp_path / "cut"))
    with monkeypatch.context() as m:
        m.setattr(QuestionBank, "sample", stop_at_the_ninth_step)
        with pytest.raises(KeyboardInterrupt):
            run_recipe(cut)
    assert not (tmp_path / "cut" / "model").exists()
    resumed = run_recipe(cut)
    assert (resumed["stage2"]["resumed_at_step"], resumed["stage2"]["steps"]) == (5, 12)
    weights = [load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("whole", "cut")]
    assert weights[0].keys() == weights[1].keys()
    assert all(bool((weights[0][k] == weights[1][k]).all()) for k in weights[0])
    rows = [line for line in (tmp_path / "cut" / "loss.csv").read_text().splitlines() if "stage2" in line]
    assert [int(r.split(",")[1]) for r in rows] == list(range(12))  # the record is whole too
    assert run_recipe(cut)["stage2"]["resumed_at_step"] == 12  # finished: not trained again
    assert "resumed_at_step" not in run_recipe(replace(cut, lr=5e-4))["stage2"]  # other settings: anew


def test_recipe_flags_reach_the_recipe_and_resume_is_refused() -> None:
    """`--max-steps` fixes stage 2's step count (machine-speed independent); `--resume` is an error."""
    from spatial_mllm_ros.cli import build_parser
    from spatial_mllm_ros.cli.train import recipe_from_args

    parser = build_parser()
    flags = ["train", "--recipe", "tiny", "--max-steps", "5000", "--minutes", "30", "--output", "o"]
    recipe = recipe_from_args(parser.parse_args(flags))
    assert (recipe.stage2_steps, recipe.minutes, recipe.output_dir) == (5000, 30.0, "o")
    default = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny"]))
    assert (default.stage2_steps, default.minutes, default.device) == (3727, 0.0, "cpu")  # steps, no clock
    on_gpu = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--device", "cuda:1"]))
    assert on_gpu.device == "cuda:1"
    finer = ["--set", "image_size=168", "--set", "episode.grid=12", "--set", "lr=5e-4"]
    finer += ["--set", "device=cuda"]
    recipe = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", *finer, "--device", "cpu"]))
    assert (recipe.image_size, recipe.episode.grid, recipe.lr, recipe.patch_size) == (168, 12, 5e-4, 14)
    assert recipe.device == "cpu"  # a named flag wins over --set
    with pytest.raises(ValueError, match="did you mean 'image_size'"):
        recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--set", "imagesize=168"]))
    with pytest.raises(ValueError, match="--resume is for --config"):
        recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--resume", "auto"]))


def test_a_tile_that_does_not_match_the_targets_grid_is_refused(tmp_path: Path) -> None:
    """Stage 1's targets are on the episodes' patch grid; a tile cut into another grid is refused up front."""
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe, run_recipe

    with pytest.raises(ValueError, match="patch grid 8 x patch_size 14"):
        run_recipe(TinyRecipe(output_dir=str(tmp_path), image_size=168))
    assert not any(tmp_path.iterdir())  # refused before anything was rendered


def test_a_gpu_that_is_not_there_is_refused_before_rendering(tmp_path: Path) -> None:
    """`--device cuda` on a machine without CUDA fails at once, not after the episodes are rendered."""
    import torch

    from spatial_mllm_ros.model.errors import ModelLoadError
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe, run_recipe

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the recipe would run on it")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        run_recipe(TinyRecipe(output_dir=str(tmp_path / "run"), device="cuda"))
    assert not any(tmp_path.iterdir())


def test_gpu_reference_script_stops_at_once_without_cuda(tmp_path: Path) -> None:
    """scripts/gpu-reference.sh checks its Python modules and the GPU before it renders or trains anything."""
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the script would run")
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-reference.sh"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "RUN": str(tmp_path / "run")}
    proc = subprocess.run(["bash", str(script), "train", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "no CUDA device here" in proc.stderr
    assert not (tmp_path / "run").exists() and not any((tmp_path / "out").iterdir())


def test_question_stage_warms_up_the_same_whatever_the_step_cap() -> None:
    """A `--max-steps` run warms up over the same steps as the default command (8000 steps, cut by the clock).

    The warmup was a 30th of the step cap, so fixing 3727 steps halved it (124); two such runs learned
    "did it move <direction>?" late or not at all.
    """
    import math

    from spatial_mllm_ros.cli import build_parser
    from spatial_mllm_ros.cli.train import recipe_from_args
    from spatial_mllm_ros.multispa.train.tiny.stage2 import stage2_lr

    parser = build_parser()
    capped = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny", "--max-steps", "3727"]))
    default = recipe_from_args(parser.parse_args(["train", "--recipe", "tiny"]))
    for recipe in (capped, default):
        assert stage2_lr(recipe, 0, 0.0) == pytest.approx(1e-3 / 266)
        assert stage2_lr(recipe, 132, 0.0) == pytest.approx(1e-3 * 133 / 266)
        assert stage2_lr(recipe, 265, 0.0) == pytest.approx(1e-3)
    assert stage2_lr(capped, 3000, 0.5) == pytest.approx(1e-3 * 0.5)  # cosine half way: half the rate
    assert stage2_lr(capped, 3726, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert stage2_lr(capped, 1000, 0.25) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_question_stage_ends_with_steps_or_clock_and_at_once_when_the_budget_is_spent() -> None:
    from spatial_mllm_ros.multispa.train.tiny.stage2 import stage2_progress

    assert stage2_progress(100, 8000, 1800.0, 3600.0) == 0.5  # the clock is further
    assert stage2_progress(6000, 8000, 60.0, 3600.0) == 0.75  # the steps are
    assert stage2_progress(10, 8000, 1e6, float("inf")) == 10 / 8000  # --minutes 0: steps alone
    # a slow stage 1 past the deadline: done at once (a negative budget used to run all 8000 steps)
    assert stage2_progress(0, 8000, 0.0, -120.0) == 1.0


def test_projector_centring_and_the_training_probes_targets() -> None:
    """Stage 2's set-up on a tiny model of the recipe's shape: centred image tokens, probe targets."""
    import numpy as np
    import torch

    from spatial_mllm_ros.conventions import QuestionKind
    from spatial_mllm_ros.multispa.train.questions import Question
    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
    from spatial_mllm_ros.multispa.train.tiny.bank import Item
    from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
    from spatial_mllm_ros.multispa.train.tiny.network import make_model, make_tokenizer, question_corpus
    from spatial_mllm_ros.multispa.train.tiny.probes import AuxProbes
    from spatial_mllm_ros.multispa.train.tiny.stage2 import center_projector, encode_frames

    recipe = TinyRecipe()
    model = make_model(make_tokenizer(question_corpus([]), 512), recipe)
    rng = np.random.default_rng(0)
    slots = 10
    glob = torch.from_numpy(rng.normal(size=(3, slots, 5)).astype(np.float32))
    present = torch.ones(3, slots)
    present[2, 4] = 0.0  # slot 4 not in view in frame 2
    size = recipe.image_size
    ep = EpisodeData("e", torch.from_numpy(rng.normal(size=(3, 3, size, size))).half(), None, None, glob,
                     present, {}, [])
    feats = encode_frames(model, [ep])
    assert feats[0].shape == (3, 16, 768)
    center_projector(model, feats)
    with torch.no_grad():
        tokens = model.model.multi_modal_projector(feats[0].flatten(0, 1).float())
    assert tokens.mean(0).abs().max() < 1e-3  # every channel centred on these frames
    assert abs(float(tokens.std(0).mean()) - 1.0) < 1e-3  # unit spread

    q = Question("robot_gripper_direction", QuestionKind.DIRECTION, "", "Which way?", "`left`", 0, 2,
                 {"vector_cam_m": [-0.1, 0.0, 0.02]})
    pair = Item(0, (0, 2), [], [], q)
    probes = AuxProbes(256, slots)
    target, mask = probes.token_targets([ep], [pair], 16)
    assert target.shape == mask.shape == (32, 2 * slots * 3)
    half = slots * 3
    assert torch.allclose(target[0, :half], glob[0, :, :3].reshape(-1) * AuxProbes.POSITION_SCALE)
    assert not target[:16, half:].any() and mask[:16, half:].all()  # first frame: zero change, asked for
    change = (glob[2, :, :3] - glob[0, :, :3]).reshape(-1) * AuxProbes.DELTA_SCALE
    assert torch.allclose(target[16, half:], change)
    assert not mask[16, half + 12 : half + 15].any()  # slot 4 missing in frame 2: its change is not asked
    depth = Question("robot_depth_compare", QuestionKind.YES_NO, "", "Closer?", "`yes`", 1, -1,
                     {"depth_a_m": 0.5, "depth_b_m": 0.8})
    yes_no = Question("robot_gripper_yes_no", QuestionKind.YES_NO, "", "Right?", "`no`", 0, 2,
                      {"vector_cam_m": [-0.1, 0.0, 0.02], "asked": "right"})
    items = [pair, Item(0, (1,), [], [], depth), Item(0, (0, 2), [], [], yes_no)]
    target, mask = probes.answer_targets(items)
    assert torch.allclose(target[0, :3], torch.tensor([-0.1, 0.0, 0.02]) * AuxProbes.DELTA_SCALE)
    assert mask[0].tolist() == [1, 1, 1, 0, 0] and mask[1].tolist() == [0, 0, 0, 1, 0]
    assert float(target[1, 3]) == pytest.approx(-0.3 * AuxProbes.DEPTH_SCALE)
    assert mask[2].tolist() == [1, 1, 1, 0, 1]  # asked "right" of a leftward move: a negative component
    assert float(target[2, 4]) == pytest.approx(-0.1 * AuxProbes.DELTA_SCALE)


def test_stage1_change_loss_by_hand() -> None:
    """One pair, three entities: the first moved 5 cm and is predicted still, the second stood still and
    is predicted still, the third has a huge error but is missing from the second frame. The first's
    x error is 0.5 dm, smooth-L1 (beta 0.1) 0.5 - 0.05 = 0.45; y and z are exact; two entities count:
    0.45 / (2 * 3).
    """
    import torch

    from spatial_mllm_ros.multispa.train.tiny.stage1 import change_loss

    truth = torch.zeros(2, 3, 3)
    truth[1, 0, 0] = 0.05
    pred = torch.zeros(2, 3, 3)
    pred[1, 2] = 9.0
    present = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert float(change_loss(pred, truth, present)) == pytest.approx(0.45 / 6)
    pred[1, 0, 0] = 0.05  # predicted right: nothing left
    assert float(change_loss(pred, truth, present)) == pytest.approx(0.0)


def test_question_draws_balance_sub_tasks_and_answers() -> None:
    """Each sub-task gets the same share of draws; a skewed yes/no gets inverse-square-root answer shares."""
    import random
    from collections import Counter

    import numpy as np

    from spatial_mllm_ros.conventions import QuestionKind
    from spatial_mllm_ros.multispa.train.questions import Question
    from spatial_mllm_ros.multispa.train.tiny.bank import QuestionBank, balance_weights

    def q(task: str, kind: QuestionKind, answer: str) -> Question:
        return Question(task, kind, "", "", answer, 0, 1, {})

    qs = [q("a", QuestionKind.YES_NO, "`no`")] * 90 + [q("a", QuestionKind.YES_NO, "`yes`")] * 10
    qs += [q("d", QuestionKind.DISTANCE, f"`{k}`") for k in range(25)]
    w = balance_weights(qs)
    assert w[:100].sum() == pytest.approx(1.0) and w[100:].sum() == pytest.approx(1.0)  # equal task shares
    assert w[90:100].sum() / w[:90].sum() == pytest.approx(np.sqrt(10) / np.sqrt(90))  # yes 25 %, not 10 %
    assert np.allclose(w[100:], w[100])  # distances count as one answer

    # a gripper moving right 10 cm over 5 frames next to three still objects, camera fixed
    truth = {
        "motion": "translate",
        "T_world_cam": [np.eye(4).tolist()] * 5,
        "gripper": [[0.025 * t, 0.0, 1.0] for t in range(5)],
        "objects": {f"{c} cube": [[0.1 * k, 0.2, 1.2]] * 5 for k, c in enumerate(("red", "blue", "green"))},
    }
    bank = QuestionBank([truth], seed=0)
    bank.item = lambda key, k: (key, bank.groups[key][k])  # ids are not needed to count draws
    draws = bank.sample(random.Random(0), 4000, per_group=4, large_first=0.0)
    assert len(draws) == 4000
    tasks = Counter(qu.task for _, qu in draws)
    natural = Counter(qu.task for qu in bank.questions())
    assert natural["robot_object_yes_no"] > 2 * natural["robot_gripper_direction"]
    shares = np.array(list(tasks.values())) / 4000
    assert shares.max() < 1.6 * shares.min(), tasks  # drawn about equally despite the natural skew


def test_bf16_autocast_only_where_asked_and_native() -> None:
    """Matmuls run in bfloat16 when the recipe asks and the CPU has native bf16; float32 otherwise."""
    import torch

    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
    from spatial_mllm_ros.multispa.train.tiny.network import bf16_autocast

    layer, x = torch.nn.Linear(4, 4), torch.ones(2, 4)
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with bf16_autocast(TinyRecipe(), torch.device("cpu")):
        assert layer(x).dtype == (torch.bfloat16 if native else torch.float32)
    with bf16_autocast(TinyRecipe(bf16=False), torch.device("cpu")):
        assert layer(x).dtype == torch.float32


def test_a_clear_motion_is_asked_a_minimal_yes_no_pair() -> None:
    """The same frames get "did it move <true direction>?" (yes) and one other direction (no)."""
    import numpy as np

    from spatial_mllm_ros.conventions import OPPOSITE_DIRECTION
    from spatial_mllm_ros.multispa.train.questions import pair_questions

    truth = {  # the gripper moves 10 cm right (camera x), a cube stays put
        "motion": "translate",
        "T_world_cam": [np.eye(4).tolist()] * 2,
        "gripper": [[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]],
        "objects": {"red cube": [[0.2, 0.2, 1.2]] * 2},
    }
    opposite = 0
    for seed in range(20):
        qs = pair_questions(truth, 0, 1, np.random.default_rng(seed))
        gripper = [(q.meta["asked"], q.answer) for q in qs if q.task == "robot_gripper_yes_no"]
        assert gripper[0] == ("right", "`yes`") and gripper[1][1] == "`no`" and gripper[1][0] != "right"
        assert all(f"move {asked}" in q.question or asked in q.question for q in qs
                   if q.task == "robot_gripper_yes_no" for asked in [q.meta["asked"]])
        opposite += gripper[1][0] == OPPOSITE_DIRECTION["right"]
        still = [q.answer for q in qs if q.task == "robot_object_yes_no"]
        assert still == ["`no`"]  # a still thing: one question, always no
    assert 3 <= opposite <= 17  # the contrast is the opposite about half of the time


def test_a_depth_comparison_is_asked_both_ways_round() -> None:
    """One frame gets "is A closer than B?" and "is B closer than A?" in the same words, answers opposite."""
    import numpy as np

    from spatial_mllm_ros.multispa.train.questions import frame_questions

    truth = {  # camera at the origin looking down +z: the cube (0.8 m) is closer than the gripper (1.0 m)
        "motion": "translate",
        "T_world_cam": [np.eye(4).tolist()],
        "gripper": [[0.0, 0.0, 1.0]],
        "objects": {"red cube": [[0.1, 0.0, 0.8]]},
    }
    for seed in range(10):
        first, second = frame_questions(truth, 0, np.random.default_rng(seed))
        assert (first.meta["a"], first.meta["b"]) == (second.meta["b"], second.meta["a"])
        assert {first.answer, second.answer} == {"`yes`", "`no`"}
        closer = first if first.answer == "`yes`" else second
        assert closer.meta["a"] == "red cube" and closer.meta["depth_a_m"] < closer.meta["depth_b_m"]
        assert first.description == second.description
        swapped = first.question.replace("red cube", "#").replace("gripper", "red cube")
        assert swapped.replace("#", "gripper") == second.question


def test_stage1_tower_is_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    """A rerun that changes only stage 2 loads the saved stage-1 tower and loss rows instead of training."""
    import numpy as np
    import torch

    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
    from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
    from spatial_mllm_ros.multispa.train.tiny.network import make_model, make_tokenizer, question_corpus
    from spatial_mllm_ros.multispa.train.tiny.stage1 import pretrain_vision_cached

    rng = np.random.default_rng(0)

    def t(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.random(shape).astype(np.float32))

    size = TinyRecipe().image_size
    ep = EpisodeData("e", t(3, 3, size, size).half(), t(3, 64, 11), t(3, 64), t(3, 10, 5), torch.ones(3, 10),
                     {}, [])
    tok = make_tokenizer(question_corpus([]), 512)

    def run(recipe: TinyRecipe) -> tuple[torch.Tensor, list, dict]:
        model, rows = make_model(tok, recipe), []
        summary = pretrain_vision_cached(model, [ep], recipe, rows, tmp_path)
        return model.model.vision_tower.embeddings.patch_embeddings.projection.weight.detach(), rows, summary

    untrained = make_model(tok, TinyRecipe()).model.vision_tower.embeddings.patch_embeddings.projection.weight
    w, rows, first = run(TinyRecipe(stage1_steps=2, stage1_batch=4))
    assert len(rows) == 2 and "reused" not in first and not torch.equal(w, untrained.detach())
    w_again, rows_again, again = run(TinyRecipe(stage1_steps=2, stage1_batch=4, lr=5e-4))  # stage 2 differs
    assert "reused" in again and rows_again == rows and torch.equal(w_again, w)
    _, rows_other, other = run(TinyRecipe(stage1_steps=3, stage1_batch=4))  # stage 1 differs: trains
    assert "reused" not in other and len(rows_other) == 3


def test_recipe_saves_ood_statistics_of_its_training_frames(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from spatial_mllm_ros.model.factory import make_tiny_model
    from spatial_mllm_ros.model.ood import FeatureStats
    from spatial_mllm_ros.multispa.train.data import fit_ood_statistics

    checkpoint = make_tiny_model(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    frames = []
    for k in range(24):
        path = tmp_path / f"f{k}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8))
        frames.append(path)
    assert fit_ood_statistics(checkpoint, frames).parent == checkpoint
    stats = FeatureStats.load(checkpoint)
    assert stats is not None and stats.n_frames == 24


def test_a_run_starts_from_a_checkpoint_at_a_finer_grid(tmp_path: Path) -> None:
    """start_from: every weight is the checkpoint's; only the tower's patch positions are resized."""
    import dataclasses

    import torch

    from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
    from spatial_mllm_ros.multispa.train.tiny.network import (
        make_model,
        make_tokenizer,
        question_corpus,
        resize_patch_positions,
        save_model,
        start_model,
    )

    coarse = TinyRecipe(seed=3)
    tok = make_tokenizer(question_corpus([]), 512)
    trained = make_model(tok, coarse)
    save_model(trained, tok, coarse, tmp_path / "ckpt", {})
    same, same_tok = start_model(TinyRecipe(start_from=str(tmp_path / "ckpt")))  # seed 0: other init
    assert len(same_tok) == len(tok)
    for (name, a), (_, b) in zip(trained.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), name

    fine, _ = start_model(TinyRecipe(start_from=str(tmp_path / "ckpt"), image_size=168))
    pos = trained.model.vision_tower.embeddings.position_embeddings
    resized = fine.model.vision_tower.embeddings.position_embeddings
    assert resized.shape == (1, 1 + 12 * 12, pos.shape[-1])
    assert torch.equal(resized[:, 0], pos[:, 0])  # the class token is not a patch
    embed = fine.model.language_model.embed_tokens.weight
    assert torch.equal(embed, trained.model.language_model.embed_tokens.weight)
    out = fine.model.vision_tower(pixel_values=torch.zeros(1, 3, 168, 168)).last_hidden_state
    assert out.shape == (1, 145, pos.shape[-1])

    # bicubic resizing keeps a constant field constant and a field along x the same in every row
    ramp = torch.arange(8.0).repeat(8, 1).reshape(1, 64, 1).expand(1, 64, 4)
    field = resize_patch_positions(torch.cat([torch.full((1, 1, 4), 7.0), ramp], 1), 12)
    field = field[:, 1:].reshape(12, 12, 4)
    assert torch.allclose(field, field[:1].expand_as(field))
    assert bool((field[0, 1:, 0] > field[0, :-1, 0]).all())
    flat = resize_patch_positions(torch.full((1, 65, 4), 2.5), 12)
    assert torch.allclose(flat, torch.full_like(flat, 2.5))

    with pytest.raises(ValueError, match="no checkpoint there"):
        start_model(TinyRecipe(start_from=str(tmp_path / "missing")))
    wide = TinyRecipe(start_from=str(tmp_path / "ckpt"))
    wide.shape = dataclasses.replace(wide.shape, vision_hidden=96)
    with pytest.raises(ValueError, match="does not fit this recipe"):
        start_model(wide)
