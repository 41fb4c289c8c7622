"""Read rosbag2 recordings (directories or single .mcap/.db3 files) as image frames and markers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.frames import Frame, stamp_ns
from spatial_mllm_ros.images import decode
from spatial_mllm_ros.reward.errors import (
    AmbiguousImageTopicError,
    BagReadError,
    EmptyImageTopicError,
    NoImageTopicError,
)

IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STRING_MSGTYPE = "std_msgs/msg/String"
# Bags of format <= 5 (Humble and older) carry no type definitions: these stores stand in for them.
TYPESTORES = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE}


def bag_id(path: str | Path) -> str:
    """Stable short name of a bag (directory or file name) used in labels, manifests and file names."""
    return Path(path).name


@dataclass(frozen=True)
class BagInfo:
    """What a bag holds: topics with types and counts, time range, storage and format version."""

    path: str
    topics: dict[str, str]
    counts: dict[str, int]
    start_ns: int
    end_ns: int
    storage: str
    version: int
    image_topics: tuple[str, ...] = field(default=())


def _storage_format(path: Path) -> tuple[str, int]:
    """Storage plugin and rosbag2 format version (0 for a bare file, which has no metadata.yaml)."""
    if path.is_file():
        return ("mcap" if path.suffix == ".mcap" else "sqlite3"), 0
    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return str(meta.get("storage_identifier", "")), int(meta.get("version", 0))
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return "", 0


class Bag:
    """One opened recording; every failure surfaces as a BagReadError naming the bag."""

    def __init__(self, path: str | Path, typestore: str = "jazzy") -> None:
        self.path = Path(path)
        if typestore not in TYPESTORES:
            raise BagReadError(str(path), f"unknown typestore {typestore!r}; use one of {sorted(TYPESTORES)}")
        self._default = get_typestore(TYPESTORES[typestore])
        self._reader: AnyReader | None = None

    def __enter__(self) -> Bag:
        if not self.path.exists():
            raise BagReadError(str(self.path), "does not exist")
        try:
            reader = AnyReader([self.path], default_typestore=self._default)
            reader.open()
        except Exception as exc:  # rosbags, sqlite3 and mcap raise many types for a damaged file
            raise BagReadError(str(self.path), f"cannot open: {type(exc).__name__}: {exc}") from exc
        self._reader = reader
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def reader(self) -> AnyReader:
        """The open AnyReader (raises if the bag is not open)."""
        if self._reader is None:
            raise BagReadError(str(self.path), "bag is not open")
        return self._reader

    def info(self) -> BagInfo:
        """Summarise topics, counts, time range and format."""
        reader = self.reader
        topics = {name: info.msgtype or "?" for name, info in reader.topics.items()}
        counts = {name: info.msgcount for name, info in reader.topics.items()}
        storage, version = _storage_format(self.path)
        images = tuple(t for t, m in sorted(topics.items()) if m in IMAGE_MSGTYPES and counts[t] > 0)
        return BagInfo(
            path=str(self.path),
            topics=topics,
            counts=counts,
            start_ns=reader.start_time if reader.message_count else 0,
            end_ns=reader.end_time if reader.message_count else 0,
            storage=storage,
            version=version,
            image_topics=images,
        )

    def image_topic(self, wanted: str | None = None) -> str:
        """Pick the topic: the one asked for (or its /compressed), the only image topic, else fail.

        An image topic with no message is never picked: the error says it is empty, not missing.
        """
        info = self.info()
        if wanted:
            # image_transport's compressed sibling too
            typed = [t for t in (wanted, f"{wanted}/compressed") if info.topics.get(t) in IMAGE_MSGTYPES]
            if not typed:
                raise NoImageTopicError(str(self.path), info.topics, wanted)
            filled = [t for t in typed if info.counts[t] > 0]
            if not filled:
                raise EmptyImageTopicError(str(self.path), typed)
            return filled[0]
        if not info.image_topics:
            empty = sorted(t for t, m in info.topics.items() if m in IMAGE_MSGTYPES)
            if empty:
                raise EmptyImageTopicError(str(self.path), empty)
            raise NoImageTopicError(str(self.path), info.topics)
        if len(info.image_topics) > 1:
            raise AmbiguousImageTopicError(str(self.path), list(info.image_topics))
        return info.image_topics[0]

    def _connections(self, topic: str) -> list:
        return [c for c in self.reader.connections if c.topic == topic]

    def _raw(self, topic: str, start: int | None = None, stop: int | None = None) -> Iterator:
        conns = self._connections(topic)
        if not conns:
            return iter(())
        try:
            yield from self.reader.messages(connections=conns, start=start, stop=stop)
        except Exception as exc:  # a truncated chunk or page shows up only while reading
            raise BagReadError(str(self.path), f"reading {topic}: {type(exc).__name__}: {exc}") from exc

    def timestamps(self, topic: str) -> list[int]:
        """Receive times (ns) of every message on a topic, without deserialising them."""
        return [t for _, t, _ in self._raw(topic)]

    def strings(self, topic: str) -> list[tuple[int, str]]:
        """All std_msgs/String payloads of a topic with their receive times."""
        out = []
        for conn, t, raw in self._raw(topic):
            msg = self._deserialize(raw, conn.msgtype, topic)
            out.append((t, str(msg.data)))
        return out

    def json_markers(self, topic: str) -> list[tuple[int, dict]]:
        """Parse String markers as JSON objects (plain text becomes {"text": ...})."""
        out = []
        for t, text in self.strings(topic):
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            out.append((t, value if isinstance(value, dict) else {"text": text}))
        return out

    def _deserialize(self, raw: bytes, msgtype: str, topic: str) -> object:
        try:
            return self.reader.deserialize(raw, msgtype)
        except Exception as exc:
            raise BagReadError(str(self.path), f"cannot decode {msgtype} on {topic}: {exc}") from exc

    def frames(self, topic: str, times: Sequence[int]) -> Iterator[tuple[int, Frame]]:
        """Decode the image messages received at `times` (sorted ns), yielding (receive time, Frame)."""
        if not times:
            return
        wanted = set(times)
        for conn, t, raw in self._raw(topic, start=min(wanted), stop=max(wanted) + 1):
            if t not in wanted:
                continue
            yield t, self.decode(self._deserialize(raw, conn.msgtype, topic), topic, t)

    def decode(self, msg: object, topic: str, received_ns: int) -> Frame:
        """Image or CompressedImage message -> Frame; header stamp, or receive time when it is zero."""
        try:
            decoded = decode(msg)
        except Exception as exc:  # ImageDecodeError and anything a corrupt payload provokes
            raise BagReadError(str(self.path), f"{topic}: cannot decode image: {exc}") from exc
        return Frame(
            pixels=decoded.rgb,
            stamp_ns=stamp_ns(msg) or received_ns,
            frame_id=str(msg.header.frame_id),
            topic=topic,
            depth=decoded.depth,
        )
