"""Real cross-process rclpy: a publisher process sends padded-row Images over Fast DDS on loopback and
this process converts what arrives exactly (no test doubles)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy  # imported, not importorskip'ed: this test must run (and fail loudly) in CI
from ros_image_publisher import PAD_BYTE, make_cases, padded_bytes

from spatial_mllm_ros.frames import frame_from_msg
from spatial_mllm_ros.images import image_to_numpy

PUBLISHER = Path(__file__).with_name("ros_image_publisher.py")
SEED = 7
RECEIVE_TIMEOUT_S = 30.0


def _expected(encoding: str, array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    native = array.astype(array.dtype.newbyteorder("="))
    if encoding == "rgb8":
        return native, None
    if encoding == "bgr8":
        return native[..., ::-1], None
    if encoding == "mono16":
        return np.repeat((native >> 8).astype(np.uint8)[..., None], 3, axis=2), None
    if encoding == "16UC1":
        depth = native.astype(np.float32) / 1000
        depth[native == 0] = np.nan
        return None, depth
    return None, native.astype(np.float32)


@pytest.mark.ros
def test_padded_images_cross_process_convert_exactly(python_exe: str) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    topic = f"/test_images_{time.monotonic_ns() % 1_000_000}"
    cases = make_cases(SEED)
    received: list = []
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("test_image_receiver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    qos = QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    # Convert in the callback, as the node does: the message buffer must be read while it is valid.
    node.create_subscription(
        Image, topic, lambda msg: received.append((msg, image_to_numpy(msg), frame_from_msg(msg, topic))), qos
    )
    publisher = subprocess.Popen(
        [python_exe, str(PUBLISHER), topic, str(SEED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < len(cases) and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        out = publisher.communicate(input="", timeout=15)[0]  # closing stdin lets it exit
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert publisher.returncode == 0, out
    assert f"published {len(cases)}" in out
    assert len(received) == len(cases), f"received {len(received)} of {len(cases)}; publisher said: {out}"

    for i, ((encoding, array, pad), (msg, decoded, frame)) in enumerate(zip(cases, received)):
        assert msg.encoding == encoding and msg.header.frame_id == f"case{i}"
        assert (
            msg.step
            == array.shape[1] * array.dtype.itemsize * (array.shape[2] if array.ndim == 3 else 1) + pad
        )
        rgb, depth = _expected(encoding, array)
        if rgb is not None:
            np.testing.assert_array_equal(decoded.rgb, rgb)
            assert decoded.depth is None
        else:
            np.testing.assert_array_equal(decoded.depth, depth)  # NaN where invalid on both sides
            assert decoded.rgb.shape == (*array.shape, 3)
        assert frame.stamp_ns == (100 + i) * 1_000_000_000 + 250_000_000
        assert frame.frame_id == f"case{i}" and frame.topic == topic
        np.testing.assert_array_equal(frame.pixels, decoded.rgb)


def test_publisher_script_padding_layout() -> None:
    """The publisher's wire layout really has padding (what the cross-process test relies on)."""
    data, step = padded_bytes(np.arange(6, dtype=np.uint8).reshape(2, 1, 3), 2)
    assert step == 5 and data == bytes([0, 1, 2, PAD_BYTE, PAD_BYTE, 3, 4, 5, PAD_BYTE, PAD_BYTE])
