"""The live simulation node over real DDS: another process receives its images, truth and episode markers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")  # the wheels are in .venv: this runs in CI, it does not skip there

from geometry_msgs.msg import PoseStamped, Twist  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from spatial_mllm_ros.images import decode  # noqa: E402


def _wait(
    executor: SingleThreadedExecutor, cond: Callable[[], bool], timeout: float, proc: subprocess.Popen
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        executor.spin_once(timeout_sec=0.05)


def _sim_node(python_exe: str, params: Sequence[str]) -> subprocess.Popen:
    """The live simulation node in its own process, with ROS parameters NAME:=VALUE."""
    cmd = [python_exe, "-m", "spatial_mllm_ros.ros.sim_node", "--ros-args"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def _probe(name: str) -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """A listening node in a context of its own, shut down however the test ends."""
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(name, context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.ros
def test_live_node_script_then_commands(python_exe: str) -> None:
    params = [
        "width:=160",
        "height:=120",
        "cameras:=[front,overhead]",
        "rate_hz:=20.0",
        "realtime_factor:=2.0",
        "script:=translate:direction=left,distance=0.1,camera=front",
        "script_frames:=6",
        "script_loop:=false",
        "diagnostics_period_s:=0.5",
        "seed:=4",
    ]
    proc = _sim_node(python_exe, params)
    try:
        with _probe("sim_probe") as (node, executor):
            got: dict[str, list] = {"image": [], "info": [], "clock": [], "pose": [], "episode": []}
            node.create_subscription(Image, "/camera/front/image_raw", got["image"].append, 10)
            node.create_subscription(CameraInfo, "/camera/front/camera_info", got["info"].append, 10)
            node.create_subscription(Clock, "/clock", got["clock"].append, 10)
            node.create_subscription(PoseStamped, "/gripper/pose", got["pose"].append, 10)
            latched = QoSProfile(
                depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
            )
            node.create_subscription(String, "/episode", lambda m: got["episode"].append(json.loads(m.data)),
                                     latched)
            cmd_vel = node.create_publisher(Twist, "/gripper/cmd_vel", 10)
            _wait(executor, lambda: len(got["episode"]) >= 2 and len(got["image"]) >= 3, 60, proc)
            start, end = got["episode"][:2]
            assert (start["event"], end["event"]) == ("start", "end")
            assert end["labels"]["motion"] == "translate" and end["labels"]["success"] is True
            assert end["labels"]["truth"]["gripper"]["front"]["direction"] == "left"
            rgb = decode(got["image"][-1]).rgb
            assert rgb.shape == (120, 160, 3) and rgb.std() > 5
            img = got["image"][-1]
            assert img.header.frame_id == "front_camera_optical_frame"
            assert got["info"][-1].k[0] > 0 and got["info"][-1].width == 160
            assert got["clock"], "no /clock"
            # Command mode after the script: drive the gripper towards world -x (left in the front camera).
            x0 = got["pose"][-1].pose.position.x
            twist = Twist()
            twist.linear.x = -0.2

            def moved() -> bool:
                cmd_vel.publish(twist)
                return got["pose"][-1].pose.position.x < x0 - 0.05

            _wait(executor, moved, 30, proc)
            target = PoseStamped()
            target.header.frame_id = "world"
            target.pose.position.x, target.pose.position.y, target.pose.position.z = 0.2, 0.1, 0.3
            target.pose.orientation.w = 1.0
            target_pub = node.create_publisher(PoseStamped, "/gripper/target", 10)

            def reached() -> bool:
                target_pub.publish(target)
                p = got["pose"][-1].pose.position
                return abs(p.x - 0.2) + abs(p.y - 0.1) + abs(p.z - 0.3) < 0.005

            _wait(executor, reached, 30, proc)
            stamps = [c.clock.sec * 10**9 + c.clock.nanosec for c in got["clock"]]
            assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1])["frames_published"] >= 6
    assert "realtime factor" in err


def test_cli_sim_run_builds_ros_arguments() -> None:
    from spatial_mllm_ros.cli import build_parser

    args = build_parser().parse_args(["sim", "run", "--set", "rate_hz:=5.0", "--script", "random"])
    assert (args.set, args.script, args.params_file) == (["rate_hz:=5.0"], "random", "")


@pytest.mark.ros
def test_live_node_bad_parameter_is_one_clear_line(python_exe: str) -> None:
    res = subprocess.run(
        [python_exe, "-m", "spatial_mllm_ros.ros.sim_node", "--ros-args", "-p", "n_objects:=9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "n_objects" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.ros
def test_play_script_runs_one_episode_then_returns_to_command_mode() -> None:
    """SimNode.play_script (what the demo drives): bad specs and overlapping scripts are refused up front."""
    from spatial_mllm_ros.ros.sim_node import SimNode
    from spatial_mllm_ros.sim.errors import MotionError, SimError
    from spatial_mllm_ros.sim.node_config import SimNodeConfig

    ctx = Context()
    rclpy.init(context=ctx)
    node = SimNode(SimNodeConfig(width=64, height=48, cameras=["front"], n_objects=1, script="",
                                 script_loop=False, script_frames=3), context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        with pytest.raises(MotionError):
            node.play_script("translate:sideways")
        assert node.config.script == ""  # a refused spec changes nothing
        node.play_script("translate:direction=left,distance=0.05")
        with pytest.raises(SimError, match="scripted episode is running"):
            node.play_script("idle")
        deadline = time.monotonic() + 60
        while node.config.script:  # back to command mode after the episode's last frame
            assert time.monotonic() < deadline, "the scripted episode did not end"
            executor.spin_once(timeout_sec=0.05)
        node.play_script("idle")  # and ready for the next one
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_live_node_publishes_tf_like_recorded_bags(python_exe: str) -> None:
    """/tf over DDS: world -> each camera's optical frame (the images' frame_id), the gripper, every object,
    at the images' stamps, equal to the pose topics. Needs tf2_msgs (ROS 2, or third_party/ built)."""
    tf2 = pytest.importorskip("tf2_msgs.msg")
    proc = _sim_node(python_exe, ("width:=80", "height:=60", "cameras:=[front,wrist]", "n_objects:=2",
                                  "rate_hz:=20.0", "realtime_factor:=2.0", "seed:=5"))
    got: dict[str, list] = {"tf": [], "image": [], "gripper": []}
    try:
        with _probe("tf_probe") as (node, executor):
            node.create_subscription(tf2.TFMessage, "/tf", got["tf"].append, QoSProfile(depth=100))
            node.create_subscription(Image, "/camera/wrist/image_raw", got["image"].append, 10)
            node.create_subscription(PoseStamped, "/gripper/pose", got["gripper"].append, 10)
            _wait(executor, lambda: len(got["tf"]) >= 3 and got["image"] and len(got["gripper"]) >= 3, 60,
                  proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    stamp = lambda h: h.stamp.sec * 10**9 + h.stamp.nanosec  # noqa: E731
    tf = got["tf"][-1]
    children = {t.child_frame_id for t in tf.transforms}
    assert {t.header.frame_id for t in tf.transforms} == {"world"}
    robot = {"front_camera_optical_frame", "wrist_camera_optical_frame", "gripper"}
    assert robot < children and len(children - robot) == 2  # and one frame per object
    assert got["image"][-1].header.frame_id in children
    poses = {stamp(p.header): p.pose.position for p in got["gripper"]}
    # the newest /tf whose pose message has arrived too (the two topics' last messages may be a tick apart)
    tf = next(m for m in reversed(got["tf"]) if stamp(m.transforms[0].header) in poses)
    at = stamp(tf.transforms[0].header)
    gripper = next(t.transform.translation for t in tf.transforms if t.child_frame_id == "gripper")
    assert (gripper.x, gripper.y, gripper.z) == (poses[at].x, poses[at].y, poses[at].z)
    assert proc.returncode == 0


def test_the_tf_message_type_is_the_one_real_bags_carry(fixture_bags) -> None:
    """third_party/tf2_msgs (for venvs without ROS) must hash like ros2/geometry2's TFMessage, or real tf2
    listeners would not match it: the hash is the one a real Jazzy bag records."""
    pytest.importorskip("tf2_msgs.msg")
    prefixes = [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]  # a venv has no index
    found = [Path(p) / "share/tf2_msgs/msg/TFMessage.json" for p in prefixes if p]
    built = next(path for path in found if path.is_file())
    ours = json.loads(built.read_text())["type_hashes"][0]["hash_string"]
    meta = yaml.safe_load((fixture_bags / "evo_tf_example" / "metadata.yaml").read_text())
    topics = meta["rosbag2_bagfile_information"]["topics_with_message_count"]
    recorded = {t["topic_metadata"]["type_description_hash"] for t in topics
                if t["topic_metadata"]["type"] == "tf2_msgs/msg/TFMessage"}
    assert recorded == {ours}
