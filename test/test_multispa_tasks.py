"""MultiSPA tasks: every label recomputed independently from the scene files (own projection maths),
drawn dots where the question says, minimal object-size sets, "did not move" for static points."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from spatial_mllm_ros.answers import parse_answer
from spatial_mllm_ros.conventions import DID_NOT_MOVE, QuestionKind
from spatial_mllm_ros.multispa.geometry import camera_motion, covers_dimension
from spatial_mllm_ros.multispa.sources import ScanNetSource, TapVid3DSource
from spatial_mllm_ros.multispa.sources.synthetic import write_scannet_scene, write_tapvid3d_clip
from spatial_mllm_ros.multispa.tasks import BENCHMARK_TASKS, FAMILIES, TASKS, resolve_tasks
from spatial_mllm_ros.multispa.tasks.base import ImageStore, TaskContext
from spatial_mllm_ros.multispa.templates import template_groups, template_set

N = 25


def _value(answer: str) -> str:
    found = re.findall(r"`([^`]*)`", answer)
    assert len(found) == 1, answer
    return found[0]


def _nums(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def _run(scene, out: Path, names: tuple[str, ...], tolerance=None) -> dict[str, list]:
    ctx = TaskContext(scene, np.random.default_rng(0), ImageStore(out, scene.scene_id), tolerance)
    result = {}
    for name in names:
        ctx.rng = np.random.default_rng(abs(hash(name)) % 1000)
        result[name] = TASKS[name].generate(ctx, TASKS[name], N)
    return result


@pytest.fixture(scope="module")
def scannet(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scannet")
    write_scannet_scene(root, n_frames=30, n_vertices=5000, seed=11)
    scene = ScanNetSource(root).load("scene0000_00")
    out = tmp_path_factory.mktemp("out")
    names = tuple(n for n in BENCHMARK_TASKS if TASKS[n].needs != "video")  # geometry, poses and depth
    return scene, out, _run(scene, out, names)


def _own_projection(view, point: np.ndarray) -> tuple[float, float, float]:
    """Independent pinhole projection: inverse pose by np.linalg.inv, then K."""
    p = np.linalg.inv(view.c2w) @ np.append(point, 1.0)
    k = view.intrinsics
    return k[0, 0] * p[0] / p[2] + k[0, 2], k[1, 1] * p[1] / p[2] + k[1, 2], p[2]


def test_registry_has_the_26_benchmark_subtasks() -> None:
    assert len(BENCHMARK_TASKS) == 26
    families = ("depth", "correspondence", "camera", "object_movement", "object_size")
    sizes = {f: len(FAMILIES[f]) for f in families}
    assert sizes == {"depth": 4, "correspondence": 2, "camera": 9, "object_movement": 8, "object_size": 3}
    assert resolve_tasks("camera,depth_value_dot") == (*FAMILIES["camera"], "depth_value_dot")
    assert set(FAMILIES["robot"]) >= {"robot_gripper_yes_no", "robot_object_distance"}
    for group in template_groups():
        tpl = template_set(group)
        assert len(tpl.descriptions) >= 8 and len(tpl.questions) >= 10 and len(tpl.answers) >= 6, group


def test_every_geometry_task_produces_samples_in_the_format(scannet) -> None:
    _, out, result = scannet
    for name, samples in result.items():
        assert samples, name
        for s in samples[:5]:
            assert s.task == name and s.kind == TASKS[name].kind
            assert s.prompt.count("<image>") == len(s.image) == len(s.width_list)
            assert all((out / p).is_file() for p in s.image)
            parsed = parse_answer(s.answer, s.kind)
            assert parsed.error is None, (s.answer, parsed)
            _value(s.answer)


def test_depth_labels_recomputed(scannet) -> None:
    scene, out, result = scannet
    views = {v.frame_id: v for v in scene.views}
    for s in result["depth_value_dot"] + result["depth_value_coord"]:
        view = views[s.meta["frames"][0]]
        u, v, z = _own_projection(view, np.array(s.meta["point_world"]))
        assert int(_value(s.answer)) == round(1000 * z)
        x, y = round(1000 * u / view.width), round(1000 * v / view.height)
        if s.task == "depth_value_coord":
            assert f"[ {x} , {y} ]" in s.prompt
        else:  # the dot is drawn where the point projects: red-dominant pixels there
            img = cv2.imread(str(out / s.image[0]))[:, :, ::-1].astype(int)
            r, g, b = img[int(round(v)), int(round(u))]
            assert r > 150 and g < 100 and b < 100
    for s in result["depth_compare_dot"] + result["depth_compare_coord"]:
        a, b = s.meta["depth_mm"]
        assert a != b
        closer = "A" if a < b else "B"
        want = closer if s.meta["asked"] == "closer" else ("B" if closer == "A" else "A")
        assert _value(s.answer) == want
    letters = [_value(s.answer) for s in result["depth_compare_dot"] + result["depth_compare_coord"]]
    assert 0.25 < letters.count("A") / len(letters) < 0.75


def test_correspondence_answers_are_the_point_projected_with_both_poses(scannet) -> None:
    scene, _, result = scannet
    views = {v.frame_id: v for v in scene.views}
    for s in result["correspondence_coord"]:
        v1, v2 = (views[f] for f in s.meta["frames"])
        p = np.array(s.meta["point_world"])
        u1, w1, z1 = _own_projection(v1, p)
        u2, w2, z2 = _own_projection(v2, p)
        assert z1 > 0 and z2 > 0
        assert f"[ {round(1000 * u1 / v1.width)} , {round(1000 * w1 / v1.height)} ]" in s.prompt
        assert _nums(_value(s.answer)) == [round(1000 * u2 / v2.width), round(1000 * w2 / v2.height)]
    for s in result["correspondence_choice"]:
        v2 = views[s.meta["frames"][1]]
        u2, w2, _ = _own_projection(v2, np.array(s.meta["point_world"]))
        letter = _value(s.answer)
        opt = np.array(s.meta["options"]["ABCD".index(letter)])
        assert np.allclose(opt, [u2, w2], atol=1e-6)
        others = [np.array(o) for i, o in enumerate(s.meta["options"]) if "ABCD"[i] != letter]
        assert all(np.linalg.norm(o - opt) >= 0.05 * v2.width for o in others)


def test_camera_labels_recomputed_and_flip_when_swapped(scannet) -> None:
    _, _, result = scannet
    word = {"camera_translation_x": ("right", "left", 0), "camera_translation_y": ("down", "up", 1),
            "camera_translation_z": ("forward", "backward", 2)}
    for name, samples in result.items():
        if not name.startswith("camera_"):
            continue
        for s in samples:
            e1, e2 = np.array(s.meta["c2w_1"]), np.array(s.meta["c2w_2"])
            rel = np.linalg.inv(e1) @ e2
            d = rel[:3, 3]
            f1, f2 = e1[:3, 2], e2[:3, 2]
            yaw = (np.degrees(np.arctan2(f2[1], f2[0]) - np.arctan2(f1[1], f1[0])) + 180) % 360 - 180
            pitch = np.degrees(np.arcsin(f2[2] / np.linalg.norm(f2)) - np.arcsin(f1[2] / np.linalg.norm(f1)))
            val = _value(s.answer)
            if name in word:
                pos, neg, axis = word[name]
                assert val == (pos if d[axis] > 0 else neg)
            elif name == "camera_yaw_direction":
                assert val == ("left" if yaw > 0 else "right")
            elif name == "camera_pitch_direction":
                assert val == ("up" if pitch > 0 else "down")
            elif name == "camera_distance":
                assert int(val) == int(1000 * np.linalg.norm(d))
            elif name == "camera_vector":
                assert _nums(val) == [int(1000 * c) for c in d]
            elif name == "camera_yaw_angle":
                assert int(val) == int(abs(yaw))
            elif name == "camera_pitch_angle":
                assert int(val) == int(abs(pitch))
            if name == "camera_yaw_direction":
                assert camera_motion(e2, e1).yaw_label != val
            if name == "camera_pitch_direction":
                assert camera_motion(e2, e1).pitch_label != val
    lr = [_value(s.answer) for s in result["camera_translation_x"]]
    assert 0.2 < lr.count("left") / len(lr) < 0.8


def test_object_size_sets_are_minimal_and_sizes_exact(scannet) -> None:
    scene, _, result = scannet
    from spatial_mllm_ros.multispa.sources.base import visibility_matrix

    vis, idx = visibility_matrix(scene)
    row = {scene.views[i].frame_id: k for k, i in enumerate(idx)}
    total = 0
    for name in ("object_size_height", "object_size_length", "object_size_width"):
        for s in result[name]:
            total += 1
            members = scene.instance_ids == s.meta["instance"]
            pts = scene.points[members]
            ext = pts.max(0) - pts.min(0)
            true = {"height": ext[2], "length": max(ext[:2]), "width": min(ext[:2])}[s.meta["dimension"]]
            assert int(_value(s.answer)) == round(1000 * true)
            assert s.meta["object"] not in {"wall", "floor", "ceiling", "window", "object"}
            frames = [row[f] for f in s.meta["frames"]]
            assert covers_dimension(pts, vis[:, members], frames, s.meta["dimension"])
            for drop in range(len(frames)):
                rest = frames[:drop] + frames[drop + 1:]
                if rest:
                    assert not covers_dimension(pts, vis[:, members], rest, s.meta["dimension"])
    assert total > 20


def test_object_movement_labels_from_the_npz_and_static_points(tmp_path: Path) -> None:
    write_tapvid3d_clip(tmp_path / "root", "adt/a", n_frames=16, seed=4)
    scene = TapVid3DSource(tmp_path / "root").load("adt/a")
    names = tuple(n for n in TASKS if n.endswith("_adt"))
    result = _run(scene, tmp_path / "out", names)
    raw = np.load(tmp_path / "root" / "adt" / "a.npz")
    c2w = np.linalg.inv(raw["extrinsics_w2c"].astype(np.float64))
    static_seen = moving_seen = 0
    for name, samples in result.items():
        assert samples, name
        for s in samples:
            t1, t2, n = s.meta["t1"], s.meta["t2"], s.meta["track"]
            p1 = c2w[t1, :3, :3] @ raw["tracks_XYZ"][t1, n] + c2w[t1, :3, 3]
            p2 = c2w[t2, :3, :3] @ raw["tracks_XYZ"][t2, n] + c2w[t2, :3, 3]
            dp = p2 - p1
            val = _nums(_value(s.answer))
            if np.linalg.norm(dp) < 0.01:
                static_seen += 1
                assert s.answer.startswith(DID_NOT_MOVE) and not any(val)
                assert n < 80, "only the wall and the block are static"
                continue
            moving_seen += 1
            if "distance" in name:
                assert abs(val[0] - round(1000 * np.linalg.norm(dp))) <= 1
            else:
                vec = np.linalg.inv(c2w[t1])[:3, :3] @ dp
                assert np.abs(np.array(val) - np.round(1000 * vec)).max() <= 1
            if "_dot_" in name:
                assert "frame_" not in s.image[0]  # a drawn image, not the plain frame
            else:
                pc = raw["tracks_XYZ"][t1, n]
                f = raw["fx_fy_cx_cy"]
                x = round(1000 * (f[0] * pc[0] / pc[2] + f[2]) / 160)
                y = round(1000 * (f[1] * pc[1] / pc[2] + f[3]) / 120)
                assert abs(s.meta["coords_1"][0] - x) <= 1 and abs(s.meta["coords_1"][1] - y) <= 1
    assert static_seen and moving_seen
    kinds = {TASKS[n].kind for n in names}
    assert kinds == {QuestionKind.DISTANCE, QuestionKind.VECTOR}
