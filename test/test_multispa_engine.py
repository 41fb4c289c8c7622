"""MultiSPA engine through the CLI: generate, skip bad scenes with reasons, resume (also after a crash
mid-write), shard, run a process pool, and build the balanced benchmark split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.multispa.engine import GenerateConfig, generate
from spatial_mllm_ros.multispa.errors import ManifestError, MultispaError
from spatial_mllm_ros.multispa.format import sample_from_json
from spatial_mllm_ros.multispa.sources.synthetic import write_scannet_scene, write_tapvid3d_clip

TASKS = "depth_value_dot,correspondence_coord,camera_translation_x,camera_yaw_angle,object_size_height"


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scannet")
    for k in range(3):
        write_scannet_scene(root, f"scene{k:04d}_00", n_frames=14, n_vertices=2500, seed=k)
    bad = root / "scene0009_00"
    shutil.copytree(root / "scene0000_00", bad)
    for pose in (bad / "pose").glob("*.txt"):
        np.savetxt(pose, np.full((4, 4), np.inf))
    (root / "scene0010_00" / "color").mkdir(parents=True)  # a scan folder with nothing in it
    return root


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _generate(root: Path, out: Path, *extra: str) -> int:
    return main(["data", "generate", "--source", "scannet", "--root", str(root), "--out", str(out),
                 "--tasks", TASKS, "--max-per-scene", "4", "--quiet", *extra])


def test_generate_skips_bad_scenes_and_resumes(tmp_path: Path, scannet_root: Path, capsys) -> None:
    out = tmp_path / "run"
    assert _generate(scannet_root, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes_done"] == 3 and summary["scenes_skipped"] == 2
    assert summary["skip_reasons"] == {"invalid poses": 1, "missing file": 1}
    assert set(summary["per_task"]) == set(TASKS.split(","))
    assert summary["label_balance"]["camera_translation_x"].keys() <= {"left", "right"}
    lines = _lines(out / "samples.jsonl")
    assert len(lines) == summary["samples"] > 30
    samples = [sample_from_json(line) for line in lines]
    assert len({s.id for s in samples}) == len(samples)
    assert all((out / p).is_file() for s in samples for p in s.image)
    assert all(s.meta["scene"] in {"scene0000_00", "scene0001_00", "scene0002_00"} for s in samples)
    assert "samples" in capsys.readouterr().out
    before = (out / "samples.jsonl").read_bytes()
    # resume: nothing left to do, nothing written twice
    assert _generate(scannet_root, out) == 0
    assert (out / "samples.jsonl").read_bytes() == before
    # a crash while writing: half a sample at the end and no manifest line for that scene
    manifest = _lines(out / "manifest.jsonl")
    (out / "manifest.jsonl").write_text("\n".join(manifest[:-3]) + "\n" + manifest[-3][:20])
    with (out / "samples.jsonl").open("ab") as f:
        f.write(b'{"id": "half a sam')
    assert _generate(scannet_root, out) == 0
    assert (out / "samples.jsonl").read_bytes() == before  # deterministic re-run of the lost scenes
    with pytest.raises(ManifestError):
        generate(GenerateConfig("scannet", out, scannet_root, tasks=(TASKS,), seed=1, progress=False))
    with pytest.raises(MultispaError):
        GenerateConfig("tapvid3d", out, scannet_root, tasks=("depth",))


def test_shards_partition_the_run_and_workers_agree(tmp_path: Path, scannet_root: Path) -> None:
    whole = tmp_path / "whole"
    assert _generate(scannet_root, whole) == 0
    sharded = tmp_path / "sharded"
    for k in range(2):
        assert _generate(scannet_root, sharded, "--num-shards", "2", "--shard-index", str(k)) == 0
    shard_lines = sorted(_lines(sharded / "samples-00000-of-00002.jsonl")
                         + _lines(sharded / "samples-00001-of-00002.jsonl"))
    assert shard_lines == sorted(_lines(whole / "samples.jsonl"))
    assert main(["data", "summary", "--out", str(sharded), "--plot"]) == 0
    assert (sharded / "summary-all.png").stat().st_size > 10_000
    merged = json.loads((sharded / "summary-all.json").read_text())
    whole_summary = json.loads((whole / "summary.json").read_text())
    for key in ("samples", "scenes_done", "scenes_skipped", "per_task", "label_balance", "skip_reasons"):
        assert merged[key] == whole_summary[key], key
    scenes = [{json.loads(x)["scene_id"] for x in _lines(sharded / f"manifest-0000{k}-of-00002.jsonl")[1:]}
              for k in range(2)]
    assert not scenes[0] & scenes[1] and len(scenes[0] | scenes[1]) == 5
    pooled = tmp_path / "pooled"
    assert _generate(scannet_root, pooled, "--workers", "2") == 0
    assert _lines(pooled / "samples.jsonl") == _lines(whole / "samples.jsonl")


def test_benchmark_is_balanced_per_subtask(tmp_path: Path) -> None:
    root = tmp_path / "tap"
    for k in range(3):
        write_tapvid3d_clip(root, f"adt/clip{k}", n_frames=16, seed=k)
    write_tapvid3d_clip(root, "pstudio/clip9", n_frames=16, seed=9)
    write_tapvid3d_clip(root, "drivetrack/d0", n_frames=8, with_extrinsics=False)
    write_tapvid3d_clip(root, "other/o1", n_frames=8)
    out = tmp_path / "bench"
    assert main(["data", "benchmark", "--source", "tapvid3d", "--root", str(root), "--out", str(out),
                 "--per-task", "12", "--max-per-scene", "10", "--quiet"]) == 0
    summary = json.loads((out / "benchmark_summary.json").read_text())
    assert set(summary["per_task"]) == {f"object_{q}_{m}_{d}" for q in ("distance", "vector")
                                        for m in ("coord", "dot") for d in ("adt", "pstudio")}
    assert all(summary["per_task"][t] == 12 for t in summary["per_task"] if t.endswith("adt"))
    assert summary["short"] and all(t.endswith("pstudio") for t in summary["short"])
    assert summary["pool"]["skip_reasons"] == {"no extrinsics": 1, "no applicable task": 1}
    lines = _lines(out / "benchmark.jsonl")
    assert len(lines) == sum(summary["per_task"].values())
    for line in lines:
        s = sample_from_json(line)
        assert all((out / p).is_file() for p in s.image)
    assert main(["data", "tasks"]) == 0
