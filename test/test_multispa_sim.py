"""MultiSPA from simulation, end to end on a tiny MuJoCo scene: robot labels agree with the simulator's
own truth function, depth answers agree with the rendered depth, every family runs offline."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.multispa.format import sample_from_json
from spatial_mllm_ros.multispa.sources import SimSource
from spatial_mllm_ros.sim.geometry import make_pose
from spatial_mllm_ros.sim.truth import motion_truth

SEED = 2


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim")
    tasks = "robot,depth_value_coord,correspondence_choice,camera_translation_x,object_size_width"
    assert main(["data", "generate", "--source", "sim", "--sim-scenes", "1", "--sim-first-seed", str(SEED),
                 "--out", str(out), "--tasks", tasks, "--max-per-scene", "12", "--quiet"]) == 0
    samples = [sample_from_json(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    scene = SimSource(n_scenes=1, first_seed=SEED).load(f"sim-{SEED:06d}")
    return out, samples, scene


def _value(answer: str) -> str:
    return re.findall(r"`([^`]*)`", answer)[0]


def test_sim_scene_is_shaped_like_the_other_sources(generated) -> None:
    out, samples, scene = generated
    assert scene.source == "sim" and len(scene.views) == 24 and scene.has_geometry
    assert all(v.depth().shape == (240, 320) for v in scene.views[:3])
    assert "gripper" in scene.video.entities and len(scene.video.entities) >= 3
    names = set(scene.instance_labels.values())
    assert names and all(len(n.split()) == 2 for n in names)  # "red cube"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes_done"] == 1
    tasks = {s.task for s in samples}
    assert {"depth_value_coord", "correspondence_choice", "camera_translation_x", "object_size_width",
            "robot_gripper_distance", "robot_object_yes_no"} <= tasks
    assert all((out / p).is_file() for s in samples for p in s.image)


def test_robot_labels_match_simulator_truth(generated) -> None:
    _, samples, scene = generated
    video = scene.video
    checked = {"direction": 0, "yes_no": 0, "distance": 0}
    yes_no = []
    for s in samples:
        if not s.task.startswith("robot_"):
            continue
        m = s.meta
        pos = video.entities[m["entity"]]
        truth = motion_truth(make_pose(np.eye(3), pos[m["t1"]]), make_pose(np.eye(3), pos[m["t2"]]),
                             video.views[m["t1"]].c2w)
        assert s.meta["subject"] == f"the {m['entity']}" and s.meta["subject"] in s.prompt.lower()
        value = _value(s.answer)
        if s.task.endswith("direction"):
            assert truth.moved and value == truth.direction
            checked["direction"] += 1
        elif s.task.endswith("yes_no"):
            assert value == ("yes" if truth.moved and m["asked"] == truth.direction else "no")
            yes_no.append((s.task, value))
            checked["yes_no"] += 1
        else:
            if truth.moved:
                assert abs(int(value) - truth.distance_mm) <= 1
            else:
                assert int(value) == 0 and "did not move" in s.answer
            checked["distance"] += 1
    assert all(checked.values()), checked
    for task in {t for t, _ in yes_no}:  # balanced exactly, per sub-task and scene
        assert yes_no.count((task, "yes")) == yes_no.count((task, "no")) > 0


def test_sim_depth_answers_match_rendered_depth(generated) -> None:
    _, samples, scene = generated
    views = {v.frame_id: v for v in scene.views}
    depth = [s for s in samples if s.task == "depth_value_coord"]
    assert depth
    for s in depth:
        view = views[s.meta["frames"][0]]
        u, v = s.meta["pixel"]
        rendered = view.depth()[int(round(v)), int(round(u))]
        assert int(_value(s.answer)) == round(1000 * s.meta["z_m"])
        assert abs(s.meta["z_m"] - rendered) < 0.05
