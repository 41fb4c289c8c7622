"""The shift benchmark suite, written for real (MuJoCo, the OpenCV painter, the data engine) at one scene a
set: seeds apart from training and from each other, reruns byte-identical, each set's change visible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.multispa.benchmark import SIM_HELD_OUT_FIRST_SEED
from spatial_mllm_ros.multispa.evaluate import benchmark_sets, load_benchmark
from spatial_mllm_ros.multispa.suite import (
    MANIFEST_FILE,
    SHIFT_SETS,
    SUITE_FIRST_SEED,
    SuiteConfig,
    SuiteError,
    set_seeds,
    write_suite,
)
from spatial_mllm_ros.multispa.suite.sets import ENGINE_TASKS, SEED_STRIDE, SUITE_SCENES
from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import BENCH_FIRST_SEED
from spatial_mllm_ros.sim.geometry import intrinsics, project, to_camera
from spatial_mllm_ros.sim.profiles import shift_profile
from spatial_mllm_ros.sim.scene import COLOURS, SceneConfig

SETS = ("in_distribution", "dim_light", "small_motions", "synthetic", "engine_templates")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("suite") / "a"
    return out, write_suite(SuiteConfig(out=out, sets=SETS, scenes=1, per_task=4))


def test_every_set_draws_its_own_seeds_apart_from_training_and_held_out_scenes() -> None:
    recipe = TinyRecipe()
    held_out = range(BENCH_FIRST_SEED, BENCH_FIRST_SEED + recipe.bench_scenes)
    taken = [set(range(recipe.train_scenes)), set(held_out)]
    for scenes in (SUITE_SCENES, SEED_STRIDE):
        ranges = [set(set_seeds(SUITE_FIRST_SEED, i, scenes)) for i in range(len(SHIFT_SETS))]
        assert all(len(r) == scenes for r in ranges)
        for i, r in enumerate(ranges):
            assert max(r) < SIM_HELD_OUT_FIRST_SEED  # nor the data engine's own benchmark scenes
            for other in taken + ranges[:i]:
                assert not r & other
    with pytest.raises(SuiteError, match="recipe's training and held-out"):
        set_seeds(BENCH_FIRST_SEED, 0, 16)
    with pytest.raises(SuiteError, match="scenes per set"):
        set_seeds(SUITE_FIRST_SEED, 0, SEED_STRIDE + 1)
    assert len({s.name for s in SHIFT_SETS}) == len(SHIFT_SETS) == 12


def test_every_mujoco_set_is_one_look_on_every_scene() -> None:
    """The recipe's training mix (randomised looks, wrist-only scenes, small motions) stays out."""
    for i, s in enumerate(SHIFT_SETS):
        if s.source == "recipe":
            spec = s.episode_spec()
            for seed in set_seeds(SUITE_FIRST_SEED, i, SUITE_SCENES):
                profile, wrist_only, scene_spec = spec.for_scene(seed)
                assert (profile, wrist_only, scene_spec) == (spec.profile, False, spec)


def test_manifest_records_seeds_settings_and_counts(suite) -> None:
    out, manifest = suite
    saved = json.loads((out / MANIFEST_FILE).read_text())
    assert [s["name"] for s in saved["sets"]] == list(SETS)
    assert set(benchmark_sets(out)) == set(SETS)  # what `spatial-mllm evaluate --benchmark out` scores
    index = {s.name: i for i, s in enumerate(SHIFT_SETS)}
    for record in saved["sets"]:
        first = SUITE_FIRST_SEED + index[record["name"]] * SEED_STRIDE
        assert record["seeds"] == [first, first]
        bench = load_benchmark(out / record["name"])
        assert record["questions"] == len(bench.samples) > 0
        assert sum(record["per_task"].values()) == len(bench.samples)
        assert max(record["per_task"].values()) <= 4
        assert all((bench.root / p).is_file() for s in bench.samples for p in s.image)
    records = {r["name"]: r for r in saved["sets"]}
    assert records["dim_light"]["settings"]["look"]["appearance"]["lights"]["level"] == [0.2, 0.5]
    assert records["small_motions"]["settings"]["episode"]["motion_m"] == [0.01, 0.05]
    assert set(records["engine_templates"]["per_task"]) <= set(ENGINE_TASKS)
    assert records["in_distribution"]["episodes"] == 8
    # the recipe's wording: bare backticked answers, the recipe's sub-task names
    ours = load_benchmark(out / "in_distribution").samples
    assert {"robot_depth_compare", "robot_gripper_moved"} & {s.task for s in ours}
    assert all(s.conversations[1]["value"].startswith("`") for s in ours)


def test_a_rerun_writes_byte_identical_sets(suite, tmp_path: Path) -> None:
    out, _ = suite
    again = tmp_path / "b"
    write_suite(SuiteConfig(out=again, sets=("dim_light", "synthetic"), scenes=1, per_task=4))
    for name in ("dim_light", "synthetic"):
        jsonl = "benchmark.jsonl"
        assert (again / name / jsonl).read_bytes() == (out / name / jsonl).read_bytes()
        for image in (out / name / "images").iterdir():
            assert (again / name / "images" / image.name).read_bytes() == image.read_bytes()
    # the same folder again, other settings: refused rather than mixed
    with pytest.raises(SuiteError, match="another folder"):
        write_suite(SuiteConfig(out=again, sets=("synthetic",), scenes=1, per_task=5))


def _mean_brightness(folder: Path) -> float:
    return float(np.mean([np.asarray(Image.open(p).convert("L"), float).mean() for p in folder.glob("*")]))


def test_each_set_changes_what_it_says(suite) -> None:
    out, _ = suite
    plain = _mean_brightness(out / "in_distribution" / "images")
    assert _mean_brightness(out / "dim_light" / "images") < 0.75 * plain
    assert shift_profile("dim_light").appearance.lights.level[1] <= 0.5
    moved = []
    for ep in sorted((out / "small_motions" / "episodes").glob("ep*")):
        truth = json.loads((ep / "truth.json").read_text())
        if truth["motion"] == "camera_translate":
            cams = np.array(truth["T_world_cam"])
            moved.append(np.linalg.norm(cams[-1, :3, 3] - cams[0, :3, 3]))
        elif truth["motion"] == "translate":
            moved.append(np.linalg.norm(np.subtract(truth["gripper"][-1], truth["gripper"][0])))
    assert moved and max(moved) < 0.05 + 0.02  # 1-5 cm, a few mm off-axis noise and tracking error


def test_synthetic_frames_show_the_objects_where_the_truth_puts_them(suite) -> None:
    """The painter's pixels agree with the truth every answer comes from (an object's centre pixel has its
    colour), so the non-MuJoCo set's labels are honest."""
    out, _ = suite
    names = list(COLOURS)
    palette = np.array([COLOURS[c] for c in names])
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    hits = total = 0
    for ep in sorted((out / "synthetic" / "episodes").glob("ep*")):
        truth = json.loads((ep / "truth.json").read_text())
        k = intrinsics(SceneConfig().fovy_deg, truth["width"], truth["height"])
        for t, pose in enumerate(truth["T_world_cam"]):
            rgb = np.asarray(Image.open(ep / f"f{t}.png"), float)
            for name, track in truth["objects"].items():
                u, v = np.round(project(to_camera(np.array(track[t]), np.array(pose)), k)).astype(int)
                if 0 <= u < truth["width"] and 0 <= v < truth["height"]:
                    pixel = rgb[v, u] / max(np.linalg.norm(rgb[v, u]), 1e-6)
                    hits += names[int(np.argmax(palette @ pixel))] == name.split()[0]
                    total += 1
    assert total > 20 and hits / total > 0.8


def test_cli_writes_a_suite_and_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "suite"
    args = ["data", "benchmark", "--source", "sim", "--suite", "shifts", "--out", str(out),
            "--sim-scenes", "1", "--per-task", "3", "--sets", "synthetic", "--quiet"]
    assert main(args) == 0
    assert "synthetic" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["scenes"] == 1 and manifest["per_task"] == 3
    assert [s["name"] for s in manifest["sets"]] == ["synthetic"]
    assert (out / "synthetic" / "benchmark.jsonl").is_file()
    assert main(["data", "benchmark", "--source", "sim", "--suite", "shifts", "--out", str(out), "--sets",
                 "no_such_set"]) == 1
    assert "no_such_set" in capsys.readouterr().err
    assert main(["data", "benchmark", "--source", "scannet", "--suite", "shifts", "--out", str(out)]) == 1
    assert "--source sim" in capsys.readouterr().err


def test_the_calibration_suite_draws_seeds_no_shift_set_uses() -> None:
    from spatial_mllm_ros.multispa.suite.sets import SUITE_FIRST_SEED, set_seeds, suite_sets

    shift_seeds = {seed for i, _ in suite_sets("shifts") for seed in set_seeds(SUITE_FIRST_SEED, i, 16)}
    (index, calibration), = suite_sets("calibration")
    assert calibration.episode_spec().randomized_share == 0.5
    assert not shift_seeds & set(set_seeds(SUITE_FIRST_SEED, index, 16))
