"""The node's parameters and clock, in-process (autostart off, so no model is needed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from spatial_mllm_ros.config import from_yaml, parameter_rows  # noqa: E402
from spatial_mllm_ros.nodecore import NodeConfig  # noqa: E402
from spatial_mllm_ros.ros.spatial_node import READ_ONLY, SpatialNode  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def context(repo_root: Path) -> Iterator[None]:
    rclpy.init(args=["--ros-args", "--params-file", str(repo_root / "config" / "spatial_mllm.yaml")])
    yield
    rclpy.try_shutdown()


def make_node(**overrides: object) -> SpatialNode:
    params = [Parameter("autostart", value=False)] + [Parameter(k, value=v) for k, v in overrides.items()]
    return SpatialNode(parameter_overrides=params)


def test_shipped_yaml_holds_every_parameter_at_its_default(repo_root: Path) -> None:
    assert from_yaml(NodeConfig, repo_root / "config" / "spatial_mllm.yaml") == NodeConfig()


def test_parameters_declared_with_descriptors(context: None) -> None:
    node = make_node()
    try:
        rows = parameter_rows(NodeConfig)
        names = {r.name for r in rows}
        assert names <= set(node._parameters)
        frames = node.describe_parameter("frames")
        assert (frames.integer_range[0].from_value, frames.integer_range[0].to_value) == (1, 64)
        assert frames.description.startswith("frames per question")
        assert node.describe_parameter("span_s").floating_point_range[0].from_value == 0.0
        qos = node.describe_parameter("qos")
        assert "one of: sensor_data, reliable, best_available" in qos.additional_constraints
        for name in (*READ_ONLY, "autostart"):
            assert node.describe_parameter(name).read_only, name
        assert node.config.standing_questions == [] and node.config.image_topics == ["image"]
    finally:
        node.destroy_node()


def test_parameters_validated_on_set(context: None) -> None:
    node = make_node()
    try:
        def reason(name: str, value: object) -> str:
            result = node.set_parameters([Parameter(name, value=value)])[0]
            return "" if result.successful else result.reason

        assert "out of range" in reason("frames", 0)
        assert "qos: invalid value 'fast'" in reason("qos", "fast")
        assert "read-only" in reason("model.checkpoint", "/tmp/other")
        assert "model.vision_backends" in reason("model.vision_backends", ["cuda-magic"])
        assert reason("span_s", 0.5) == "" and node.service.config.span_s == 0.5
        assert reason("standing_questions", ["Did it move?"]) == ""
        assert node.config.standing_questions == ["Did it move?"]
        assert node.service.config.standing_questions == ["Did it move?"]
    finally:
        node.destroy_node()


def test_unconfigured_node_answers_with_reason(context: None) -> None:
    node = make_node()
    published: list[dict] = []
    node._publish_answer = lambda answer, frames: published.append(answer)  # capture, no DDS needed
    node.service._publish = node._publish_answer
    try:
        answer = node.service.submit("Did it move left?").result(timeout=1)
        assert answer["error"] == "node not active" and published == [answer]
        assert node.lifecycle_state == "unconfigured"
    finally:
        node.destroy_node()


def test_use_sim_time_stamps_from_clock(context: None) -> None:
    node = make_node(use_sim_time=True)
    pub_node = rclpy.create_node("clock_source")
    clock_pub = pub_node.create_publisher(Clock, "/clock", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 10
        while node._now_ns() != 42_500_000_000:
            assert time.monotonic() < deadline, "node clock never followed /clock"
            clock_pub.publish(Clock(clock=rclpy.time.Time(seconds=42.5).to_msg()))
            executor.spin_once(timeout_sec=0.05)
        assert node.service.stats().model_state.startswith("not loaded")
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        node.destroy_node()


def test_entry_point_runs_and_stops_cleanly(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("spatial_mllm_node")
    assert exe.exists(), "console script spatial_mllm_node not installed (scripts/setup-env.sh)"
    log = tmp_path / "node.log"
    proc = subprocess.Popen([str(exe), "--ros-args", "-p", "autostart:=false", "-r", "__ns:=/entry"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    # SIGINT once the node answers get_state, i.e. spins (a fixed sleep interrupted a slow machine's imports)
    rclpy.init()
    probe = rclpy.create_node("entry_probe")
    get_state = probe.create_client(GetState, "/entry/spatial_mllm_node/get_state")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the node never answered get_state"
            if get_state.wait_for_service(timeout_sec=0.5):
                future = get_state.call_async(GetState.Request())
                rclpy.spin_until_future_complete(probe, future, timeout_sec=2.0)
                if future.done() and future.result() is not None:
                    break
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_camera_named_twice_is_subscribed_once(context: None) -> None:
    node = make_node(image_topics=["image", "/image", "wrist/image/compressed"])
    try:
        node._subscribe_images()  # what configure does after loading the model
        assert node.service.cameras == ["/image", "/wrist/image"]
        assert sorted(node._image_subs) == ["/image", "/wrist/image/compressed"]
        assert node.count_subscribers("/image") == 1
    finally:
        node._unsubscribe_images()
        node.destroy_node()
