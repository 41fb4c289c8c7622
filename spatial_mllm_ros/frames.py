"""Stamped frames and the bounded, thread-safe buffer the node selects question frames from."""

from __future__ import annotations

import bisect
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatial_mllm_ros.config import option
from spatial_mllm_ros.errors import ConfigError, InvalidFrameError
from spatial_mllm_ros.images import DEFAULT_MAX_PIXELS, decode

log = logging.getLogger(__name__)

_UINT8 = np.dtype(np.uint8)
_THUMB_CELLS = 32  # the change measure looks at about 32 x 32 samples, whatever the image size


@dataclass(frozen=True, eq=False)
class Frame:
    """One camera image at one ROS time; pixels are RGB uint8 HxWx3, read-only once in a Frame.

    Frames compare and hash by identity (comparing pixel arrays would be ambiguous and slow).
    """

    pixels: np.ndarray
    stamp_ns: int
    frame_id: str = ""
    topic: str = ""
    depth: np.ndarray | None = None

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.dtype != _UINT8 or px.ndim != 3 or px.shape[2] != 3:
            got = f"{px.dtype} {px.shape}" if isinstance(px, np.ndarray) else type(px).__name__
            raise InvalidFrameError(f"pixels must be RGB uint8 HxWx3, got {got}")
        depth = self.depth
        if depth is not None and (not isinstance(depth, np.ndarray) or depth.shape != px.shape[:2]):
            got = depth.shape if isinstance(depth, np.ndarray) else type(depth).__name__
            raise InvalidFrameError(f"depth {got} does not match pixels {px.shape[:2]} (HxW metres)")
        # Read-only views: frames are shared between threads and the embedding cache; the caller's
        # own array objects keep their flags.
        object.__setattr__(self, "pixels", _read_only(px))
        if depth is not None:
            object.__setattr__(self, "depth", _read_only(depth))

    @property
    def key(self) -> str:
        """Embedding-cache key: the same image from the same topic always maps to the same key."""
        return f"{self.topic}@{self.stamp_ns}"

    @property
    def nbytes(self) -> int:
        """Memory held by this frame's arrays."""
        return self.pixels.nbytes + (self.depth.nbytes if self.depth is not None else 0)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view() if array.flags.c_contiguous else np.ascontiguousarray(array)
    view.flags.writeable = False
    return view


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message (rclpy or rosbags) in integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def frame_from_msg(msg: Any, topic: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """Decode an Image or CompressedImage (rclpy or rosbags) into a Frame stamped by its header."""
    decoded = decode(msg, max_pixels)
    return Frame(decoded.rgb, stamp_ns(msg), str(msg.header.frame_id), topic, decoded.depth)


@dataclass
class FramesConfig:
    """What the frame buffer keeps and what the decoder accepts."""

    max_frames: int = option(64, help="frames kept per topic", range=(1, 100_000))
    max_bytes: int = option(256 << 20, help="bytes kept over all topics", range=(1, None))
    min_interval_s: float = option(
        0.0,
        help="keyframes: minimum stamp gap between kept frames of a topic (0 keeps all)",
        range=(0.0, None),
    )
    min_change: float = option(
        0.0,
        help="keyframes: minimum mean absolute change (0..1) against the last kept frame on a ~32x32 sample",
        range=(0.0, 1.0),
    )
    max_pixels: int = option(
        DEFAULT_MAX_PIXELS,
        help="images with more pixels are refused before decoding (compressed ones by their header size)",
        range=(1, None),
    )


@dataclass(frozen=True)
class BufferStats:
    """Counters since creation; frames and bytes are what the buffer holds now."""

    pushed: int = 0
    kept: int = 0
    dropped: int = 0  # refused by the keyframe policy, duplicate stamps or larger than max_bytes
    evicted: int = 0  # kept once, then pushed out by max_frames / max_bytes
    resets: int = 0  # times a backwards stamp cleared the buffer
    frames: int = 0
    bytes: int = 0


@dataclass
class _Topic:
    """Per-topic state: kept frames in stamp order (with a global push sequence), keyframe reference."""

    entries: deque[tuple[int, Frame]] = field(default_factory=deque)
    last_seen_ns: int | None = None
    last_kept_ns: int | None = None
    thumb: np.ndarray | None = None


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    """Take a ~32x32 strided sample: a cheap basis for the image-change measure."""
    h, w = pixels.shape[:2]
    return pixels[:: max(1, h // _THUMB_CELLS), :: max(1, w // _THUMB_CELLS)].astype(np.float32)


class FrameBuffer:
    """Recent frames per topic, bounded by count (per topic) and bytes (overall); one lock, many readers.

    A push whose stamp is older than the topic's previous one (bag loop, simulation reset) clears the
    whole buffer with a warning, since time itself went back.
    """

    def __init__(
        self,
        max_frames: int = 64,
        max_bytes: int = 256 << 20,
        min_interval_s: float = 0.0,
        min_change: float = 0.0,
    ) -> None:
        for key, value, ok in (
            ("max_frames", max_frames, max_frames >= 1),
            ("max_bytes", max_bytes, max_bytes >= 1),
            ("min_interval_s", min_interval_s, min_interval_s >= 0),
            ("min_change", min_change, 0.0 <= min_change <= 1.0),
        ):
            if not ok:
                raise ConfigError(
                    key, f"invalid value {value!r}", expected="max_* >= 1; 0 <= min_change <= 1"
                )
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.min_interval_ns = round(min_interval_s * 1e9)
        self.min_change = min_change
        self._lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._seq = 0
        self._bytes = 0
        self._counts = {"pushed": 0, "kept": 0, "dropped": 0, "evicted": 0, "resets": 0}

    @classmethod
    def from_config(cls, config: FramesConfig) -> FrameBuffer:
        """Build a buffer with the bounds and keyframe policy of a FramesConfig."""
        return cls(config.max_frames, config.max_bytes, config.min_interval_s, config.min_change)

    def push(self, frame: Frame) -> bool:
        """Offer a frame; returns whether it was kept (keyframe policy, duplicates, size)."""
        thumb = _thumbnail(frame.pixels) if self.min_change > 0 else None
        with self._lock:
            self._counts["pushed"] += 1
            state = self._topic(frame.topic)
            if state.last_seen_ns is not None and frame.stamp_ns < state.last_seen_ns:
                log.warning(
                    "stamp on %r went back %.3f s (bag loop or sim reset?): clearing %d buffered frames",
                    frame.topic, (state.last_seen_ns - frame.stamp_ns) / 1e9, self._frame_count(),
                )
                self._clear_locked()
                self._counts["resets"] += 1
                state = self._topic(frame.topic)
            state.last_seen_ns = frame.stamp_ns
            if not self._is_keyframe(state, frame, thumb):
                self._counts["dropped"] += 1
                return False
            state.entries.append((self._seq, frame))
            self._seq += 1
            self._bytes += frame.nbytes
            state.last_kept_ns = frame.stamp_ns
            state.thumb = thumb
            self._counts["kept"] += 1
            while len(state.entries) > self.max_frames:
                self._evict(state)
            while self._bytes > self.max_bytes:
                holding = (t for t in self._topics.values() if t.entries)
                self._evict(min(holding, key=lambda t: t.entries[0][0]))  # the oldest push overall
            return True

    def _topic(self, name: str) -> _Topic:
        state = self._topics.get(name)
        if state is None:
            state = self._topics[name] = _Topic()
        return state

    def _is_keyframe(self, state: _Topic, frame: Frame, thumb: np.ndarray | None) -> bool:
        if frame.nbytes > self.max_bytes:
            log.warning("frame of %d bytes exceeds max_bytes %d: not kept", frame.nbytes, self.max_bytes)
            return False
        if state.last_kept_ns is None:
            return True
        if frame.stamp_ns == state.last_kept_ns or frame.stamp_ns - state.last_kept_ns < self.min_interval_ns:
            return False
        if thumb is None or state.thumb is None or thumb.shape != state.thumb.shape:
            return True
        return float(np.abs(thumb - state.thumb).mean()) / 255.0 >= self.min_change

    def _evict(self, state: _Topic) -> None:
        _, old = state.entries.popleft()
        self._bytes -= old.nbytes
        self._counts["evicted"] += 1

    def _frame_count(self) -> int:
        return sum(len(t.entries) for t in self._topics.values())

    def _clear_locked(self) -> None:
        self._topics.clear()
        self._bytes = 0

    def _frames(self, topic: str | None) -> list[Frame]:
        """Held frames of one topic (or all, merged), oldest first; caller holds the lock."""
        if topic is not None:
            state = self._topics.get(topic)
            return [f for _, f in state.entries] if state else []
        merged = [f for t in self._topics.values() for _, f in t.entries]
        if len(self._topics) > 1:
            merged.sort(key=lambda f: (f.stamp_ns, f.topic))
        return merged

    def select(self, n: int, span_s: float | None = None, topic: str | None = None) -> list[Frame]:
        """Up to n distinct frames, oldest first, ending at the newest.

        Without span_s: the n newest frames. With span_s: for each of n targets evenly spaced over
        [newest - span_s, newest], the frame of nearest stamp, keeping order and never repeating a frame
        (span_s is clamped to the buffered history).
        topic=None selects over all topics merged by stamp.
        """
        with self._lock:
            frames = self._frames(topic)
        if n <= 0 or not frames:
            return []
        n = min(n, len(frames))
        if span_s is None or n == 1:
            return frames[-n:]
        stamps = [f.stamp_ns for f in frames]
        newest = stamps[-1]
        span_ns = min(span_s * 1e9, newest - stamps[0])  # a span beyond the history spreads over all of it
        chosen: list[int] = []
        upper = len(frames)  # exclusive bound: frames picked later are strictly older
        for k in range(n - 1, -1, -1):
            target = newest - span_ns * (n - 1 - k) / (n - 1)
            lo, hi = k, upper - 1  # leave k older frames for the k older targets
            i = min(max(bisect.bisect_left(stamps, target, lo, hi + 1), lo), hi)
            if i > lo and abs(stamps[i - 1] - target) <= abs(stamps[i] - target):
                i -= 1
            chosen.append(i)
            upper = i
        return [frames[i] for i in reversed(chosen)]

    def latest(self, topic: str | None = None) -> Frame | None:
        """Return the newest frame of a topic (or of all topics)."""
        with self._lock:
            if topic is not None:
                state = self._topics.get(topic)
                return state.entries[-1][1] if state and state.entries else None
            heads = [t.entries[-1][1] for t in self._topics.values() if t.entries]
        return max(heads, key=lambda f: f.stamp_ns) if heads else None

    @property
    def topics(self) -> list[str]:
        """Topics that currently hold frames."""
        with self._lock:
            return [name for name, t in self._topics.items() if t.entries]

    def clear(self) -> None:
        """Forget every frame and keyframe reference (counters are kept)."""
        with self._lock:
            self._clear_locked()

    @property
    def stats(self) -> BufferStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return BufferStats(**self._counts, frames=self._frame_count(), bytes=self._bytes)

    def __len__(self) -> int:
        with self._lock:
            return self._frame_count()
