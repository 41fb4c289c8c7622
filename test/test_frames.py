"""Frame and FrameBuffer: bounds, keyframe policy, time selection, stamp jumps, topics, threads."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from spatial_mllm_ros.config import from_dict
from spatial_mllm_ros.errors import ConfigError, ImageTooLargeError, InvalidFrameError
from spatial_mllm_ros.frames import BufferStats, Frame, FrameBuffer, FramesConfig, frame_from_msg, stamp_ns
from spatial_mllm_ros.images import DEFAULT_MAX_PIXELS, numpy_to_image_fields

SEC = 1_000_000_000


def _frame(t_s: float, topic: str = "cam", value: int = 0, size: tuple[int, int] = (4, 6)) -> Frame:
    return Frame(np.full((*size, 3), value, np.uint8), round(t_s * SEC), "optical", topic)


def _stamps(frames: list[Frame]) -> list[float]:
    return [round(f.stamp_ns / SEC, 6) for f in frames]


def test_frame_contract() -> None:
    pixels = np.zeros((2, 3, 3), np.uint8)
    frame = Frame(pixels, 5 * SEC + 7, "cam_optical", "/cam/image_raw")
    assert frame.key == "/cam/image_raw@5000000007"
    assert frame.nbytes == 18
    assert not frame.pixels.flags.writeable and pixels.flags.writeable  # the caller's array keeps its flags
    depth = np.ones((2, 3), np.float32)
    assert Frame(pixels, 0, depth=depth).nbytes == 18 + 24
    fortran = np.asfortranarray(np.zeros((4, 5, 3), np.uint8))
    assert Frame(fortran, 0).pixels.flags.c_contiguous
    twin = Frame(pixels, 5 * SEC + 7, "cam_optical", "/cam/image_raw")
    assert frame != twin and len({frame, twin, frame}) == 2  # identity, never an array comparison


@pytest.mark.parametrize(
    ("pixels", "depth", "text"),
    [
        (np.zeros((2, 3), np.uint8), None, "HxWx3"),
        (np.zeros((2, 3, 4), np.uint8), None, "HxWx3"),
        (np.zeros((2, 3, 3), np.float32), None, "uint8"),
        ([[0]], None, "list"),
        (np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2), np.float32), "does not match"),
    ],
)
def test_frame_rejects_bad_pixels(pixels: object, depth: np.ndarray | None, text: str) -> None:
    with pytest.raises(InvalidFrameError, match=text):
        Frame(pixels, 0, depth=depth)  # type: ignore[arg-type]


def test_bounded_by_count_per_topic() -> None:
    buf = FrameBuffer(max_frames=3)
    assert all(buf.push(_frame(t)) for t in range(5))
    assert _stamps(buf.select(10)) == [2, 3, 4]
    assert buf.stats == BufferStats(pushed=5, kept=5, dropped=0, evicted=2, resets=0, frames=3, bytes=3 * 72)


def test_bounded_by_bytes_over_all_topics() -> None:
    buf = FrameBuffer(max_frames=100, max_bytes=5 * 72)
    for t in range(4):
        buf.push(_frame(t, "a"))
        buf.push(_frame(t + 0.5, "b"))
    assert len(buf) == 5 and buf.stats.bytes == 5 * 72
    # the oldest pushes went first, whichever topic they came from
    assert _stamps(buf.select(10, topic="a")) == [2, 3] and _stamps(buf.select(10, topic="b")) == [
        1.5,
        2.5,
        3.5,
    ]


def test_frame_larger_than_max_bytes_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    buf = FrameBuffer(max_bytes=100)
    assert buf.push(_frame(0))
    assert not buf.push(_frame(1, size=(10, 10)))
    assert "exceeds max_bytes" in caplog.text
    assert len(buf) == 1 and buf.stats.dropped == 1


def test_keyframes_by_min_interval() -> None:
    buf = FrameBuffer(min_interval_s=0.25)
    kept = [t for t in np.arange(0, 1.01, 0.1) if buf.push(_frame(float(t)))]
    assert np.allclose(kept, [0.0, 0.3, 0.6, 0.9])
    assert buf.stats.dropped == 7


def test_keyframes_by_min_change() -> None:
    buf = FrameBuffer(min_change=0.05)
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
    assert buf.push(Frame(scene, 0))
    noisy = np.clip(scene.astype(int) + rng.integers(-3, 4, scene.shape), 0, 255).astype(np.uint8)
    assert not buf.push(Frame(noisy, 1))  # sensor noise is not a change
    moved = scene.copy()
    moved[30:90, 40:120] = 255  # an object appeared in a quarter of the view
    assert buf.push(Frame(moved, 2))
    assert not buf.push(Frame(moved, 3))
    assert buf.push(Frame(cv2.resize(moved, (80, 60)), 4))  # another size is always a change


def test_duplicate_stamp_is_dropped() -> None:
    buf = FrameBuffer()
    assert buf.push(_frame(1))
    assert not buf.push(_frame(1, value=9))
    assert buf.latest().pixels[0, 0, 0] == 0 and buf.stats.resets == 0


def test_backwards_stamp_clears_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    buf = FrameBuffer()
    for t in (10, 11, 12):
        buf.push(_frame(t, "a"))
    buf.push(_frame(11.5, "b"))
    with caplog.at_level(logging.WARNING, logger="spatial_mllm_ros.frames"):
        assert buf.push(_frame(1, "a"))  # bag loop: time went back 11 s
    assert "went back 11.000 s" in caplog.text and "clearing 4" in caplog.text
    assert _stamps(buf.select(10)) == [1] and buf.topics == ["a"]
    assert buf.stats.resets == 1 and buf.stats.frames == 1 and buf.stats.bytes == 72


def test_select_newest_without_span() -> None:
    buf = FrameBuffer()
    for t in range(6):
        buf.push(_frame(t))
    assert _stamps(buf.select(3)) == [3, 4, 5]
    assert _stamps(buf.select(1, span_s=10)) == [5]
    assert buf.select(0) == [] and FrameBuffer().select(3) == []


def test_select_span_nearest_stamps_oldest_first() -> None:
    buf = FrameBuffer(max_frames=100)
    for t in np.arange(0, 3.01, 0.1):  # 10 Hz for 3 s
        buf.push(_frame(round(float(t), 1)))
    assert _stamps(buf.select(4, span_s=1.5)) == [1.5, 2.0, 2.5, 3.0]
    assert _stamps(buf.select(2, span_s=0.33)) == [2.7, 3.0]
    assert _stamps(buf.select(3, span_s=0.04)) == [2.8, 2.9, 3.0]  # no duplicates even for a tiny span
    assert _stamps(buf.select(3, span_s=100)) == [0.0, 1.5, 3.0]  # clamped to the 3 s of history


def test_select_with_uneven_stamps_returns_distinct_ordered_frames() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        buf = FrameBuffer(max_frames=100)
        times = np.cumsum(rng.uniform(0.01, 0.5, rng.integers(1, 20)))
        for t in times:
            buf.push(_frame(float(t)))
        n, span = int(rng.integers(1, 8)), float(rng.uniform(0, 3))
        got = [f.stamp_ns for f in buf.select(n, span_s=span)]
        assert len(got) == min(n, len(times))
        assert got == sorted(set(got)) and got[-1] == buf.latest().stamp_ns


def test_select_prefers_nearest_stamp() -> None:
    buf = FrameBuffer()
    for t in (0.0, 0.45, 0.62, 0.9, 1.0):
        buf.push(_frame(t))
    assert _stamps(buf.select(3, span_s=1.0)) == [0.0, 0.45, 1.0]  # 0.45 is nearer 0.5 than 0.62


def test_topics_are_separate() -> None:
    buf = FrameBuffer(max_frames=2)
    for t in range(3):
        buf.push(_frame(t, "/front"))
        buf.push(_frame(t + 0.5, "/wrist"))
    assert sorted(buf.topics) == ["/front", "/wrist"]
    assert _stamps(buf.select(5, topic="/front")) == [1, 2]
    assert _stamps(buf.select(5, topic="/wrist")) == [1.5, 2.5]
    assert _stamps(buf.select(3)) == [1.5, 2, 2.5]  # all topics merged by stamp
    assert buf.latest().topic == "/wrist" and buf.latest("/front").stamp_ns == 2 * SEC
    assert buf.latest("/nope") is None and buf.select(2, topic="/nope") == []
    buf.push(_frame(0.1, "/front"))  # one camera's time going back resets the others too
    assert buf.topics == ["/front"]
    buf.clear()
    assert len(buf) == 0 and buf.latest() is None and buf.stats.pushed == 7


def test_one_writer_many_readers() -> None:
    buf = FrameBuffer(max_frames=8, max_bytes=8 * 72)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                picked = buf.select(4, span_s=0.5)
                stamps = [f.stamp_ns for f in picked]
                assert stamps == sorted(set(stamps)) and len(picked) <= 4
                s = buf.stats
                assert s.kept - s.evicted == s.frames <= 8
                buf.latest()
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    for i in range(3000):
        buf.push(_frame(i * 0.01))
    stop.set()
    for r in readers:
        r.join(timeout=10)
    assert not errors, errors[0]
    assert buf.stats.pushed == 3000 and len(buf) == 8


def test_config_builds_the_buffer() -> None:
    config = from_dict(FramesConfig, {"max_frames": 2, "min_interval_s": 1})
    buf = FrameBuffer.from_config(config)
    assert buf.max_frames == 2 and buf.min_interval_ns == SEC
    with pytest.raises(ConfigError, match="min_change"):
        from_dict(FramesConfig, {"min_change": 1.5})
    with pytest.raises(ConfigError, match="max_frames"):
        FrameBuffer(max_frames=0)


def test_frame_from_messages() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=34), frame_id="cam_optical")
    raw = SimpleNamespace(header=header, **numpy_to_image_fields(rgb, "bgr8"))
    frame = frame_from_msg(raw, "/cam/image_raw")
    assert frame.stamp_ns == stamp_ns(raw) == 12 * SEC + 34 and frame.frame_id == "cam_optical"
    np.testing.assert_array_equal(frame.pixels, rgb)
    png = SimpleNamespace(
        header=header,
        format="rgb8; png compressed bgr8",
        data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes(),
    )
    np.testing.assert_array_equal(frame_from_msg(png, "/cam/image_raw/compressed").pixels, rgb)
    mm = np.full((8, 10), 1500, np.uint16)
    depth = frame_from_msg(SimpleNamespace(header=header, **numpy_to_image_fields(mm, "16UC1")))
    assert depth.depth is not None and float(depth.depth[0, 0]) == pytest.approx(1.5)


def test_pixel_limit_applies_before_decoding_or_copying() -> None:
    """The node passes buffer.max_pixels; its default refuses 8000x8000 (the size of issue 25's bomb)."""
    header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="cam_optical")
    limit = FramesConfig().max_pixels
    assert limit == DEFAULT_MAX_PIXELS < 8000 * 8000
    claim = dict(height=8000, width=8000, encoding="rgb8", is_bigendian=0, step=8000 * 3)
    with pytest.raises(
        ImageTooLargeError, match="8000x8000"
    ):  # from the fields: the short data is never read
        frame_from_msg(SimpleNamespace(header=header, data=bytes(16), **claim), max_pixels=limit)
    png = cv2.imencode(".png", np.zeros((8, 10, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageTooLargeError, match="10x8 = 80 px > limit 79 px"):
        frame_from_msg(SimpleNamespace(header=header, format="png", data=png), max_pixels=79)
