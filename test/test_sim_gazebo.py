"""Gazebo assets: the SDF world and the gz launch file. Gazebo, ros_gz and `launch` cannot be installed on
these machines, so the world is checked as XML against the MuJoCo scene and the launch file by its syntax
tree (not executed)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.sim import SceneConfig, build_scene
from spatial_mllm_ros.sim.gazebo_world import (
    SHIPPED_WORLD,
    link_rotation,
    rpy_of,
    scene_to_sdf,
    shipped_config,
)
from spatial_mllm_ros.sim.geometry import axis_angle


def _rot(rpy: list[float]) -> np.ndarray:
    r, p, y = rpy
    return axis_angle([0, 0, 1], y) @ axis_angle([0, 1, 0], p) @ axis_angle([1, 0, 0], r)


def test_shipped_world_is_the_mujoco_tabletop() -> None:
    root = ET.parse(SHIPPED_WORLD).getroot()
    assert root.tag == "sdf" and root.get("version") == "1.9"
    world = root.find("world")
    models = {m.get("name"): m for m in world.findall("model")}
    scene = build_scene(shipped_config())
    assert {"ground_plane", "table", "gripper", "front_camera", "side_camera", "overhead_camera"} <= set(
        models
    )
    for obj in scene.objects:
        pose = [float(v) for v in models[obj.name.replace(" ", "_")].findtext("pose").split()]
        assert pose[:3] == pytest.approx([*obj.xy, obj.half_height_m], abs=1e-5)
    plugins = {p.get("name") for p in world.findall("plugin")}
    assert "gz::sim::systems::Sensors" in plugins and "gz::sim::systems::Physics" in plugins
    sensors = {s.get("name"): s for s in world.iter("sensor")}
    assert set(sensors) == {"front", "side", "overhead", "wrist"}
    for name, sensor in sensors.items():
        assert sensor.get("type") == "camera"
        assert sensor.findtext("topic") == f"/camera/{name}/image_raw"
        assert sensor.findtext("camera/camera_info_topic") == f"/camera/{name}/camera_info"
        assert (sensor.findtext("camera/image/width"), sensor.findtext("camera/image/height")) == (
            "320",
            "240",
        )
        pose = [float(v) for v in sensor.findtext("pose").split()]
        cam = scene.cameras[name]
        assert pose[:3] == pytest.approx(cam.pos, abs=1e-5)
        # The Gazebo link looks along +x: that must be the MuJoCo camera's optical z (forward).
        np.testing.assert_allclose(_rot(pose[3:])[:, 0], cam.rotation[:, 2], atol=1e-4)
    assert SHIPPED_WORLD.read_text() == scene_to_sdf(scene), "regenerate: spatial-mllm sim sdf"


def test_rpy_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = axis_angle(rng.normal(size=3), rng.uniform(0, np.pi))
        np.testing.assert_allclose(_rot(list(rpy_of(r))), r, atol=1e-9)
    np.testing.assert_allclose(link_rotation(np.eye(3)) @ [1, 0, 0], [0, 0, 1])


def test_cli_writes_world_of_any_seed(tmp_path: Path) -> None:
    out = tmp_path / "w.sdf"
    assert main(["sim", "sdf", "--seed", "5", "--objects", "4", "--out", str(out)]) == 0
    names = {m.get("name") for m in ET.parse(out).getroot().iter("model")}
    for obj in build_scene(SceneConfig(seed=5, n_objects=4)).objects:
        assert obj.name.replace(" ", "_") in names


def test_gazebo_launch_structure(repo_root: Path) -> None:
    src = (repo_root / "launch" / "gazebo_sim.launch.py").read_text()
    tree = ast.parse(src)
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"generate_launch_description", "bridge_arguments"} <= funcs
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"LaunchDescription", "Node", "IncludeLaunchDescription", "DeclareLaunchArgument"} <= imported
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {
        "ros_gz_bridge",
        "parameter_bridge",
        "ros_gz_sim",
        "gz_sim.launch.py",
        "spatial_mllm_node",
    } <= strings
    assert "/camera/front/image_raw" in strings and "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock" in strings
    # bridge_arguments is plain Python: run it to check every camera is bridged gz -> ROS
    ns: dict = {}
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "bridge_arguments")
    consts = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CAMERAS"]
    exec(compile(ast.Module(body=[*consts, func], type_ignores=[]), "launch", "exec"), ns)  # noqa: S102
    specs = ns["bridge_arguments"]()
    for cam in ("front", "side", "overhead", "wrist"):
        assert f"/camera/{cam}/image_raw@sensor_msgs/msg/Image[gz.msgs.Image" in specs
        assert f"/camera/{cam}/camera_info@sensor_msgs/msg/CameraInfo[gz.msgs.CameraInfo" in specs
