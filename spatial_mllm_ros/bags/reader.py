"""Read rosbag2 recordings (directories or single .mcap/.db3 files): image frames, markers, CameraInfo, /tf.

The one bag reader of the package: the annotator and the data engine both read through it, so Humble-era
bags (no embedded types), compressed images and damaged files behave the same in both.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.bags.errors import (
    AmbiguousImageTopicError,
    BagReadError,
    EmptyImageTopicError,
    NoImageTopicError,
)
from spatial_mllm_ros.errors import InvalidTransformError
from spatial_mllm_ros.frames import Frame, stamp_ns
from spatial_mllm_ros.images import decode
from spatial_mllm_ros.transforms import TransformBuffer

IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STRING_MSGTYPE = "std_msgs/msg/String"
CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
TF_MSGTYPE = "tf2_msgs/msg/TFMessage"
TF_TOPICS = ("/tf", "/tf_static")  # the second one's transforms hold at every time
BAG_SUFFIXES = (".mcap", ".db3")
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: 25x faster on a bag's metadata
# Bags of format <= 5 (Humble and older) carry no type definitions: these stores stand in for them.
TYPESTORES = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE}


def bag_id(path: str | Path) -> str:
    """Stable short name of a bag (directory or file name) used in labels, manifests and file names."""
    return Path(path).name


def is_bag(path: Path) -> bool:
    """Whether a path is a rosbag2 directory (metadata.yaml) or a single .mcap/.db3 file."""
    return (path / "metadata.yaml").is_file() if path.is_dir() else path.suffix in BAG_SUFFIXES


def find_bags(paths: Iterable[str | Path]) -> list[Path]:
    """Bags named directly, or the bags one level inside a folder that is not a bag itself; sorted per folder.

    A path that is neither (or a folder without a bag) raises BagReadError, so a typo is not an empty run.
    """
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise BagReadError(str(path), "does not exist")
        if is_bag(path):
            out.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if is_bag(p)) if path.is_dir() else []
        if not inside:
            raise BagReadError(str(path), "is not a rosbag2 (a directory with metadata.yaml, or a .mcap/.db3 "
                                          "file) and holds none")
        out += inside
    return out


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
        text = (path / "metadata.yaml").read_text()
        meta = yaml.load(text, Loader=YAML_LOADER)["rosbag2_bagfile_information"]
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
        self._info: BagInfo | None = None

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
            self._info = None

    @property
    def reader(self) -> AnyReader:
        """The open AnyReader (raises if the bag is not open)."""
        if self._reader is None:
            raise BagReadError(str(self.path), "bag is not open")
        return self._reader

    def info(self) -> BagInfo:
        """Summarise topics, counts, time range and format (read once per opening: metadata.yaml is slow)."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self) -> BagInfo:
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

    def timestamps(self, topic: str, start: int | None = None, stop: int | None = None) -> list[int]:
        """Receive times (ns) of a topic's messages, optionally in [start, stop), not deserialised."""
        return [t for _, t, _ in self._raw(topic, start, stop)]

    def messages(self, topic: str, start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[int, object]]:
        """Deserialised messages of a topic with their receive times (ns), optionally in [start, stop)."""
        for conn, t, raw in self._raw(topic, start, stop):
            yield t, self._deserialize(raw, conn.msgtype, topic)

    def first_message(self, topic: str) -> object | None:
        """Return the topic's first message, or None when it has none."""
        return next((msg for _, msg in self.messages(topic)), None)

    def strings(self, topic: str) -> list[tuple[int, str]]:
        """All std_msgs/String payloads of a topic with their receive times."""
        return [(t, str(msg.data)) for t, msg in self.messages(topic)]

    def transform_buffer(self, max_gap_s: float, start: int | None = None,
                         stop: int | None = None) -> tuple[TransformBuffer, Counter[str]]:
        """Buffer the transforms of /tf and /tf_static (header stamps); count the refused ones by reason.

        start / stop (receive times, ns) read only that window of /tf, so an episode of a long bag reads its
        own transforms; /tf_static is read whole (it is published once, at the start).
        """
        buffer = TransformBuffer(max_gap_s)
        refused: Counter[str] = Counter()
        for topic in TF_TOPICS:
            if self.info().topics.get(topic) != TF_MSGTYPE:
                continue
            static = topic == TF_TOPICS[1]
            for _, msg in self.messages(topic, None if static else start, None if static else stop):
                for tr in msg.transforms:
                    v, q = tr.transform.translation, tr.transform.rotation
                    try:
                        buffer.set_transform(tr.header.frame_id, tr.child_frame_id, stamp_ns(tr),
                                             (v.x, v.y, v.z), (q.x, q.y, q.z, q.w), static)
                    except InvalidTransformError as exc:
                        refused[str(exc)] += 1
        return buffer, refused

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
