"""Coming from Meta's repo: its exported ScanNet layout (posed_images/ + scans/) is read, its task names are
aliases of ours, a run that writes nothing fails and says why, and camera labels equal Meta's formulas
(with --paper-exact: the full matrix inverse of the 6-decimal pose files)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.multispa import tasks as registry
from spatial_mllm_ros.multispa.errors import MultispaError
from spatial_mllm_ros.multispa.format import sample_from_json
from spatial_mllm_ros.multispa.geometry import camera_motion
from spatial_mllm_ros.multispa.sources import ScanNetSource
from spatial_mllm_ros.multispa.sources.synthetic import look_pose, write_meta_scene, write_scannet_scene
from spatial_mllm_ros.multispa.tasks import FAMILIES, TASKS, resolve_tasks

SCENE = "scene0000_00"
META_CAMERA_TYPES = ("x_movement", "y_movement", "z_movement", "yaw_movement", "pitch_movement",
                     "yaw_angle", "pitch_angle", "total_distance", "displacement_vector")


@pytest.fixture(scope="module")
def meta_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_meta_scene(tmp_path_factory.mktemp("meta"), SCENE, n_frames=14, n_vertices=2500, seed=1)


def _generate(root: Path, out: Path, *extra: str) -> int:
    return main(["data", "generate", "--source", "scannet", "--root", str(root), "--out", str(out),
                 "--max-per-scene", "4", "--quiet", *extra])


# 1. Meta's layout is read (auto-detected) like the export layout


def test_meta_layout_loads_like_the_export_layout(tmp_path: Path, meta_root: Path) -> None:
    write_scannet_scene(tmp_path, SCENE, n_frames=14, n_vertices=2500, seed=1)  # the same scan, export layout
    export = ScanNetSource(tmp_path).load(SCENE)
    src = ScanNetSource(meta_root)
    assert src.list_scenes() == [SCENE]
    scene = src.load(SCENE)
    assert [v.frame_id for v in scene.views] == [f"{5 * i:05d}" for i in range(14)]
    for ours, theirs in zip(scene.views, export.views, strict=True):
        assert np.allclose(ours.c2w, theirs.c2w, atol=1e-5)  # the files keep 6 decimals
        assert np.allclose(ours.intrinsics, theirs.intrinsics, atol=1e-5)
        assert (ours.width, ours.height) == (theirs.width, theirs.height)
    assert np.allclose(scene.points, export.points, atol=1e-4)
    assert (scene.instance_ids == export.instance_ids).all()
    assert scene.instance_labels == export.instance_labels
    assert np.array_equal(scene.views[3].depth(), export.views[3].depth())


def test_a_root_with_no_scans_names_the_accepted_layouts(tmp_path: Path, meta_root: Path) -> None:
    with pytest.raises(MultispaError, match=r"posed_images.*scans") as empty:
        ScanNetSource(tmp_path).list_scenes()
    assert "color/" in str(empty.value)
    with pytest.raises(MultispaError, match="use its parent"):
        ScanNetSource(meta_root / "posed_images").list_scenes()
    (tmp_path / "scans" / SCENE).mkdir(parents=True)  # ScanNet's download, frames never extracted
    with pytest.raises(MultispaError, match="extract_posed_images"):
        ScanNetSource(tmp_path).list_scenes()


# 2. Meta's task names are aliases of ours


def test_meta_task_names_resolve_to_our_subtasks(capsys: pytest.CaptureFixture[str]) -> None:
    camera = [resolve_tasks(name) for name in META_CAMERA_TYPES]
    assert all(len(names) == 1 for names in camera)  # one sub-task each, and all nine of ours
    assert sorted(n for (n,) in camera) == sorted(FAMILIES["camera"])
    assert resolve_tasks("camera_movement") == FAMILIES["camera"]
    assert resolve_tasks("depth_perception") == FAMILIES["depth"]
    assert resolve_tasks("visual_correspondence") == FAMILIES["correspondence"]
    assert resolve_tasks("object_perception") == FAMILIES["object_size"]
    assert resolve_tasks("depth_estimation_dot,depth_comparison_coor") == ("depth_value_dot",
                                                                            "depth_compare_coord")
    assert resolve_tasks("visual_correspondence_dot_2_multichoice") == ("correspondence_choice",)
    assert resolve_tasks("object_perception_width_estimation") == ("object_size_width",)
    assert set(resolve_tasks("tapvid3d_total_distance")) == {
        f"object_distance_{m}_{d}" for m in ("coord", "dot") for d in ("adt", "pstudio")}
    assert set(resolve_tasks("object_movement_coord,object_movement_dot")) == set(FAMILIES["object_movement"])
    for alias, names in registry.META_ALIASES.items():
        assert alias not in TASKS and alias not in FAMILIES, alias  # an alias never hides one of our names
        assert resolve_tasks(alias) == resolve_tasks(names)
    assert main(["data", "tasks"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^x_movement\s+-> camera_translation_x$", listing, re.M)
    assert re.search(r"^camera_movement\s+-> camera$", listing, re.M)


def test_data_generate_takes_meta_names_on_meta_layout(tmp_path: Path, meta_root: Path) -> None:
    out = tmp_path / "run"
    tasks = ("x_movement,depth_estimation_dot,visual_correspondence_coor_2_coor,"
             "object_perception_height_estimation")
    assert _generate(meta_root, out, "--tasks", tasks) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes_done"] == 1 and summary["samples"] > 0
    assert set(summary["per_task"]) <= {"camera_translation_x", "depth_value_dot", "correspondence_coord",
                                        "object_size_height"}
    assert summary["per_task"]["camera_translation_x"] > 0
    for line in (out / "samples.jsonl").read_text().splitlines():
        assert all((out / p).is_file() for p in sample_from_json(line).image)


# 3. A run that writes no sample exits non-zero and says why


def test_a_run_with_no_sample_exits_nonzero_and_says_why(tmp_path: Path, meta_root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _generate(empty, tmp_path / "out_empty", "--tasks", "camera") == 1
    err = capsys.readouterr().err
    assert "no ScanNet scans" in err and "posed_images" in err and "color/" in err

    bad = tmp_path / "bad"
    shutil.copytree(meta_root, bad)
    for pose in (bad / "posed_images" / SCENE).glob("0*.txt"):
        pose.write_text("-inf -inf -inf -inf\n" * 4)  # tracking lost on every frame
    assert _generate(bad, tmp_path / "out_bad", "--tasks", "camera") == 1
    err = capsys.readouterr().err
    assert "1 of 1 scenes skipped: invalid poses x1" in err and "summary.json" in err
    summary = json.loads((tmp_path / "out_bad" / "summary.json").read_text())
    assert summary["skip_reasons"] == {"invalid poses": 1}

    assert _generate(meta_root, tmp_path / "out_shard", "--tasks", "camera", "--num-shards", "2",
                     "--shard-index", "1") == 1
    assert "use --num-shards 1 or fewer" in capsys.readouterr().err


# 4. Camera labels are Meta's formulas; --paper-exact inverts the pose files with the full inverse


def _meta_pose(root: Path, frame: str) -> np.ndarray:
    """Aligned camera-to-world pose read from the files as Meta's engine reads them."""
    pose = np.array([[float(x) for x in line.split()]
                     for line in (root / "posed_images" / SCENE / f"{frame}.txt").read_text().splitlines()])
    meta = (root / "scans" / SCENE / f"{SCENE}.txt").read_text()
    align = next(line for line in meta.splitlines() if line.startswith("axisAlignment"))
    return np.array([float(x) for x in align.split("=")[1].split()]).reshape(4, 4) @ pose


def _rigid_inverse(e: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    inv[:3, :3] = e[:3, :3].T
    inv[:3, 3] = -e[:3, :3].T @ e[:3, 3]
    return inv


def _meta_labels(e1: np.ndarray, e2: np.ndarray, inverse: Callable[[np.ndarray], np.ndarray]) -> dict:
    """The nine answers by the paper's definitions, written out independently of the engine."""
    d = (inverse(e1) @ e2)[:3, 3]
    f1, f2 = e1[:3, 2], e2[:3, 2]
    yaw = np.degrees(np.arctan2(f2[1], f2[0])) - np.degrees(np.arctan2(f1[1], f1[0]))
    if abs(yaw) > 180:
        yaw -= np.sign(yaw) * 360
    pitch = (np.degrees(np.arcsin(f2[2] / np.linalg.norm(f2)))
             - np.degrees(np.arcsin(f1[2] / np.linalg.norm(f1))))
    return {"camera_translation_x": "right" if d[0] > 0 else "left",
            "camera_translation_y": "down" if d[1] > 0 else "up",
            "camera_translation_z": "forward" if d[2] > 0 else "backward",
            "camera_yaw_direction": "left" if yaw > 0 else "right",
            "camera_pitch_direction": "up" if pitch > 0 else "down",
            "camera_yaw_angle": str(int(abs(yaw))), "camera_pitch_angle": str(int(abs(pitch))),
            "camera_distance": str(int(np.linalg.norm(d) * 1000)),
            "camera_vector": str([int(c * 1000) for c in d])}


def _answer(text: str, task: str) -> str:
    value = re.findall(r"`([^`]*)`", text)[0]
    return str([int(x) for x in re.findall(r"-?\d+", value)]) if task == "camera_vector" else value


@pytest.mark.parametrize("paper_exact", [True, False])
def test_camera_labels_equal_metas_on_all_nine_types(tmp_path: Path, meta_root: Path,
                                                     paper_exact: bool) -> None:
    out = tmp_path / "run"
    flags = ["--paper-exact"] if paper_exact else []
    assert _generate(meta_root, out, "--tasks", "camera_movement", "--max-per-scene", "8", *flags) == 0
    inverse = np.linalg.inv if paper_exact else _rigid_inverse  # default: the rigid R^T inverse
    seen = set()
    for line in (out / "samples.jsonl").read_text().splitlines():
        s = sample_from_json(line)
        f1, f2 = s.meta["frames"]
        expected = _meta_labels(_meta_pose(meta_root, f1), _meta_pose(meta_root, f2), inverse)[s.task]
        assert _answer(s.answer, s.task) == expected, (s.task, f1, f2)
        seen.add(s.task)
    assert seen == set(FAMILIES["camera"])
    header = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["header"]
    assert header.get("paper_exact", False) is paper_exact


def test_paper_exact_inverse_decides_a_borderline_label() -> None:
    e1 = np.round(look_pose(np.array([1.2, 0.7, 1.4]), 37.0, -12.0), 6)  # a 6-decimal pose file: R^T R != I
    v = np.array([0.0, 0.3, 0.5])
    err = ((e1[:3, :3].T @ e1[:3, :3] - np.eye(3)) @ v)[0]
    assert abs(err) > 1e-9
    v[0] = -err / 2  # sideways motion so small that the two inverses disagree on its sign
    e2 = e1.copy()
    e2[:3, 3] = e1[:3, 3] + e1[:3, :3] @ v
    meta_x = _meta_labels(e1, e2, np.linalg.inv)["camera_translation_x"]
    assert camera_motion(e1, e2, full_inverse=True).x_label == meta_x
    assert camera_motion(e1, e2).x_label != meta_x
