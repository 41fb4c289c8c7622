"""`spatial-mllm bringup --sim` (what sim.launch.py starts): the MuJoCo world's live node and the spatial
node in one process; a client on DDS asks about the front camera and gets answers stamped in sim time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from rclpy.qos import QoSProfile, QoSReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from spatial_mllm_ros.model.factory import make_tiny_model  # noqa: E402

pytestmark = pytest.mark.ros
QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)


def test_bringup_sim_answers_in_sim_time(tmp_path: Path) -> None:
    checkpoint = make_tiny_model(tmp_path / "tiny")
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    width: 160\n    height: 120\n    n_objects: 1\n"
                      f"    model:\n      checkpoint: {checkpoint}\n      device: cpu\n")
    log = tmp_path / "bringup.log"
    rclpy.init()
    node = rclpy.create_node("sim_client")
    proc = subprocess.Popen(
        [sys.executable, "-m", "spatial_mllm_ros", "bringup", "--params-file", str(params), "--sim"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())
    answers: list[dict] = []
    node.create_subscription(String, "/spatial_mllm_node/answer",
                             lambda m: answers.append(json.loads(m.data)), QOS)
    pub = node.create_publisher(String, "/spatial_mllm_node/question", QOS)
    question = String(data='{"id": "sim", "question": "Did the gripper move left?", "span_s": 0.5}')
    try:
        deadline = time.monotonic() + 120
        answer = None
        while answer is None:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            if pub.get_subscription_count():
                pub.publish(question)
            rclpy.spin_once(node, timeout_sec=1.0)
            # early answers may cover less than span_s (the history is short) or report it as an error
            answer = next((a for a in answers if a["error"] is None
                           and a["frame_stamps"][-1] - a["frame_stamps"][0] > 0.45), None)
        assert answer["camera"] == "/camera/front/image_raw" and len(answer["frame_stamps"]) == 2
        first, last = answer["frame_stamps"]
        assert 0 < last < 600 and last - first == pytest.approx(0.5, abs=0.11)  # sim time, 10 Hz frames
        assert abs(answer["stamp"] - last) < 5  # the node's clock follows /clock
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
