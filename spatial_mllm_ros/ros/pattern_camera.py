"""A synthetic camera node (a square sliding over a gradient) for tests, benchmarks and dry runs.

`python -m spatial_mllm_ros.ros.pattern_camera --topic image --rate 30 --size 1280x720 [--compressed-topic T]`
publishes stamped frames until SIGINT/SIGTERM, then prints one JSON line with how many it published
(also on SIGUSR1, without stopping).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from spatial_mllm_ros.ros.convert import ns_to_stamp, numpy_to_image


def pattern(width: int, height: int, i: int) -> np.ndarray:
    """Frame i of the pattern: an RGB gradient with a white square moving right, one step per frame."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = x[None, :]
    img[..., 1] = y[:, None]
    img[..., 2] = 128
    side = max(4, height // 4)
    left = (i * max(1, width // 64)) % max(1, width - side)
    img[height // 2 - side // 2: height // 2 + side // 2, left:left + side] = 255
    return img


class PatternCamera(Node):
    """Publishes the pattern on `topics` at `rate_hz`, stamped by the node clock (rounded to `quantum_ns`)."""

    def __init__(self, topics: Sequence[str], compressed: Sequence[str], rate_hz: float, width: int,
                 height: int, frame_id: str, quantum_ns: int, wait_for_subscribers: bool = False,
                 depth: int = 10) -> None:
        super().__init__("pattern_camera")
        self.published = 0
        self.wait_for_subscribers = wait_for_subscribers
        self._matched_ns: int | None = None
        self._raw = [self.create_publisher(Image, t, depth) for t in topics]
        self._jpeg = [self.create_publisher(CompressedImage, t, depth) for t in compressed]
        self._frames = [pattern(width, height, i) for i in range(16)]  # cycle: no per-frame drawing cost
        self._raw_msgs = [numpy_to_image(f, 0, frame_id) for f in self._frames]
        self._jpeg_data = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes()
                           for f in self._frames]
        self._frame_id = frame_id
        self._quantum = max(1, quantum_ns)
        self._timer = self.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        now = self.get_clock().now().nanoseconds
        if self.wait_for_subscribers:
            if not all(p.get_subscription_count() for p in self._raw + self._jpeg):
                return
            if self._matched_ns is None:  # let discovery finish on both sides before the first frame
                self._matched_ns = now
            if now - self._matched_ns < 1_000_000_000:
                return
        stamp = ns_to_stamp(round(now / self._quantum) * self._quantum)
        k = self.published % len(self._frames)
        msg = self._raw_msgs[k]
        msg.header.stamp = stamp
        for pub in self._raw:
            pub.publish(msg)
        for pub in self._jpeg:
            pub.publish(CompressedImage(header=Header(stamp=stamp, frame_id=self._frame_id), format="jpeg",
                                        data=self._jpeg_data[k]))
        self.published += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pattern camera until SIGINT/SIGTERM; print {"published": N} on exit."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topic", action="append", default=[], help="sensor_msgs/Image topic (repeatable)")
    p.add_argument("--compressed-topic", action="append", default=[], help="CompressedImage (JPEG) topic")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    p.add_argument("--frame-id", default="camera_optical_frame")
    p.add_argument("--quantum-ms", type=float, default=0.0, help="round stamps to multiples of this")
    p.add_argument("--depth", type=int, default=10, help="publisher history depth (reliable QoS)")
    p.add_argument("--wait-for-subscribers", action="store_true",
                   help="publish only from 1 s after every topic has a subscriber")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = PatternCamera(args.topic or ([] if args.compressed_topic else ["image"]), args.compressed_topic,
                         args.rate, width, height, args.frame_id, round(args.quantum_ms * 1e6),
                         args.wait_for_subscribers, args.depth)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    # SIGUSR1: print the count so far (benchmarks compare it with what a subscriber received)
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps({"published": node.published}), flush=True))
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"published": node.published}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
