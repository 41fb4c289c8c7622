"""Publisher process for test_ros_images.py: sends sensor_msgs/Image frames with padded rows over DDS.

Run as `python test/ros_image_publisher.py TOPIC SEED`. It waits for a subscriber (discovery), publishes
every case of `make_cases(seed)` with reliable, transient-local QoS, prints "published N", then stays
alive until its stdin closes so reliable delivery can finish. The message rows are built here by hand
(padding bytes set to 0xEE), independently of spatial_mllm_ros.images.
"""

from __future__ import annotations

import sys
import time

import numpy as np

PAD_BYTE = 0xEE
DISCOVERY_TIMEOUT_S = 20.0


def make_cases(seed: int) -> list[tuple[str, np.ndarray, int]]:
    """(encoding, stored array in wire byte order, padding bytes per row) for every published frame."""
    rng = np.random.default_rng(seed)
    u8 = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    return [
        ("rgb8", u8(48, 64, 3), 13),
        ("bgr8", u8(48, 64, 3), 7),
        ("rgb8", u8(480, 640, 3), 64),
        ("mono16", rng.integers(0, 65536, (30, 40), dtype=np.uint16).astype(">u2"), 5),  # big-endian
        ("16UC1", rng.integers(0, 8000, (30, 40), dtype=np.uint16).astype("<u2"), 6),
        ("32FC1", rng.uniform(0.2, 9.0, (30, 40)).astype("<f4"), 8),
    ]


def padded_bytes(array: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Rows of `array` as bytes, each followed by `pad` bytes of PAD_BYTE; returns (data, step)."""
    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    step = rows.shape[1] + pad
    out = np.full((array.shape[0], step), PAD_BYTE, np.uint8)
    out[:, : rows.shape[1]] = rows
    return out.tobytes(), step


def main(topic: str, seed: int) -> int:
    """Publish the cases once a subscriber is matched; exit cleanly when stdin closes."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("test_image_publisher", context=context)
    try:
        qos = QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        pub = node.create_publisher(Image, topic, qos)
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while pub.get_subscription_count() < 1:
            if time.monotonic() > deadline:
                print("no subscriber discovered", flush=True)
                return 2
            time.sleep(0.02)
        cases = make_cases(seed)
        for i, (encoding, array, pad) in enumerate(cases):
            msg = Image()
            msg.header.stamp.sec = 100 + i
            msg.header.stamp.nanosec = 250_000_000
            msg.header.frame_id = f"case{i}"
            msg.height, msg.width = array.shape[:2]
            msg.encoding = encoding
            msg.is_bigendian = int(array.dtype.byteorder == ">")
            msg.data, msg.step = padded_bytes(array, pad)
            pub.publish(msg)
        print(f"published {len(cases)}", flush=True)
        sys.stdin.read()  # the test closes stdin once it has everything
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
