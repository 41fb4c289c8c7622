"""Cost per frame of message -> Frame conversion + FrameBuffer push, as a ratio to a floor measured in
the same run: a plain copy of the same bytes for raw images, cv2.imdecode alone for JPEG.

Targets (issue 2): <= 1.5x the copy for raw rgb8/bgr8 with padded rows, <= 1.1x imdecode for JPEG.
Floor and conversion are timed in alternating rounds of process CPU time (--wall: wall clock); each
figure is the best round (the timeit convention: the minimum is least disturbed by other load).
Run: .venv/bin/python bench/bench_images.py [--quick | --full] [--wall] [--cv-threads N] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np

from spatial_mllm_ros.frames import FrameBuffer, frame_from_msg

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
ROW_PAD = 64  # bytes of padding after each row (step > width * 3)
TARGETS = {"rgb8": 1.5, "bgr8": 1.5, "jpeg": 1.1}
BUFFER_FRAMES = 8  # 8 x 1080p = 50 MB: more than this machine's 32 MB L3, as a real buffer would be


@dataclass
class Result:
    case: str
    size: str
    floor_ms: float  # floor whose outputs are kept as long as the buffer keeps frames
    hot_floor_ms: float  # floor whose outputs are dropped at once (stays in cache)
    ours_ms: float

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.floor_ms

    @property
    def hot_ratio(self) -> float:
        return self.ours_ms / self.hot_floor_ms

    @property
    def target(self) -> float:
        return TARGETS[self.case]


def _scene(width: int, height: int) -> np.ndarray:
    """A camera-like image (smooth gradients + texture) so JPEG sizes are realistic."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    noise = cv2.GaussianBlur(rng.integers(0, 60, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    return (base + noise).clip(0, 255).astype(np.uint8)


def _message(case: str, rgb: np.ndarray) -> SimpleNamespace:
    header = SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="camera_optical")
    if case == "jpeg":
        data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        return SimpleNamespace(header=header, format="rgb8; jpeg compressed bgr8", data=data)
    pixels = rgb if case == "rgb8" else np.ascontiguousarray(rgb[..., ::-1])
    height, width = rgb.shape[:2]
    step = width * 3 + ROW_PAD
    wire = np.zeros((height, step), np.uint8)
    wire[:, : width * 3] = pixels.reshape(height, -1)
    return SimpleNamespace(
        header=header,
        height=height,
        width=width,
        encoding=case,
        is_bigendian=0,
        step=step,
        data=wire.tobytes(),
    )


def _per_frame_ms(fn: Callable[[], object], iters: int, clock: Callable[[], int]) -> float:
    start = clock()
    for _ in range(iters):
        fn()
    return (clock() - start) / iters / 1e6


def measure(case: str, size: str, rounds: int, iters: int, clock: Callable[[], int]) -> Result:
    """Alternate floor and conversion rounds on the same message bytes; return the best rounds."""
    msg = _message(case, _scene(*SIZES[size]))
    raw = np.frombuffer(msg.data, np.uint8)
    if case == "jpeg":

        def hot_floor() -> object:
            return cv2.imdecode(raw, cv2.IMREAD_COLOR)
    else:

        def hot_floor() -> object:
            return raw.copy()

    buffer = FrameBuffer(max_frames=BUFFER_FRAMES)
    ring: deque[object] = deque(maxlen=BUFFER_FRAMES)  # the floor keeps its outputs like the buffer does
    stamp = msg.header.stamp

    def floor() -> None:
        ring.append(hot_floor())

    def ours() -> object:
        stamp.sec += 1
        return buffer.push(frame_from_msg(msg, "/camera/image_raw"))

    for _ in range(BUFFER_FRAMES + 1):  # fill the buffer and the ring, warm caches and allocator
        floor(), ours()
    times: dict[str, list[float]] = {"floor": [], "hot": [], "ours": []}
    for _ in range(rounds):
        for name, fn in (("hot", hot_floor), ("floor", floor), ("ours", ours)):
            times[name].append(_per_frame_ms(fn, iters, clock))
    assert buffer.stats.kept == buffer.stats.pushed  # every frame really went into the buffer
    return Result(case, size, min(times["floor"]), min(times["hot"]), min(times["ours"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer rounds (a few seconds)")
    mode.add_argument("--full", action="store_true", help="more rounds for steadier figures")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--cv-threads",
        type=int,
        default=None,
        help="OpenCV worker threads (default: OpenCV's own choice); 1 is steadier on a busy machine",
    )
    parser.add_argument("--wall", action="store_true", help="time the wall clock instead of process CPU")
    args = parser.parse_args(argv)
    # Process CPU time (all threads, so OpenCV's workers count too) is the cost per frame, and far steadier
    # than the wall clock on a shared machine.
    clock = time.perf_counter_ns if args.wall else time.process_time_ns
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    rounds = 11 if args.quick else 101 if args.full else 41
    print(
        f"numpy {np.__version__}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), rows padded by "
        f"{ROW_PAD} bytes, buffer of {BUFFER_FRAMES} frames, {rounds} alternating rounds, best round, "
        f"{'wall-clock' if args.wall else 'process CPU'} time"
    )
    print(
        "floor: a plain copy of the message bytes (cv2.imdecode alone for jpeg), its outputs kept as long as"
    )
    print("the buffer keeps frames; 'hot' drops each output at once, so it stays in cache (for reference)")
    print(
        f"{'case':<6} {'size':<10} {'floor ms':>9} {'ours ms':>9} {'ratio':>6} {'target':>7}   "
        f"{'hot ms':>8} {'vs hot':>7}"
    )
    missed = 0
    for size in SIZES:
        for case in ("rgb8", "bgr8", "jpeg"):
            iters = max(2, int(60 / (SIZES[size][0] * SIZES[size][1] / 1e6)) // (8 if case == "jpeg" else 1))
            r = measure(case, size, rounds, iters, clock)
            ok = r.ratio <= r.target
            missed += not ok
            print(
                f"{r.case:<6} {r.size:<10} {r.floor_ms:9.3f} {r.ours_ms:9.3f} {r.ratio:5.2f}x "
                f"{'<=' if ok else '> '}{r.target:.1f}x   {r.hot_floor_ms:8.3f} {r.hot_ratio:6.2f}x"
            )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
