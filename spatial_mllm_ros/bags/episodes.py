"""Cut a bag into episodes (whole, time gaps, marker topic, intervals file) and sample their frames."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from spatial_mllm_ros.bags.errors import EmptyImageTopicError, EpisodeSplitError
from spatial_mllm_ros.bags.reader import STRING_MSGTYPE, Bag, bag_id

SPLIT_MODES = ("whole", "gap", "marker", "intervals")
DEFAULT_MARKER_TOPIC = "/episode"
DEFAULT_GAP_S = 1.0


@dataclass(frozen=True)
class Split:
    """How a bag is cut into episodes; parsed from `--split whole|gap[:S]|marker[:TOPIC]|intervals:FILE`."""

    mode: str = "whole"
    gap_s: float = DEFAULT_GAP_S
    topic: str = DEFAULT_MARKER_TOPIC
    file: str = ""

    @classmethod
    def parse(cls, spec: str) -> Split:
        """Parse a --split value; a bad one names itself and the accepted forms."""
        mode, _, arg = spec.partition(":")
        if mode not in SPLIT_MODES:
            raise EpisodeSplitError(
                f"--split {spec!r}: use whole, gap[:SECONDS], marker[:TOPIC] or intervals:FILE"
            )
        if mode == "gap":
            try:
                gap = float(arg) if arg else DEFAULT_GAP_S
            except ValueError:
                raise EpisodeSplitError(f"--split {spec!r}: gap must be seconds") from None
            if gap <= 0:
                raise EpisodeSplitError(f"--split {spec!r}: gap must be > 0")
            return cls(mode, gap_s=gap)
        if mode == "marker":
            return cls(mode, topic=arg or DEFAULT_MARKER_TOPIC)
        if mode == "intervals":
            if not arg or not Path(arg).is_file():
                raise EpisodeSplitError(f"--split {spec!r}: intervals file {arg!r} not found")
            return cls(mode, file=arg)
        return cls(mode)


@dataclass(frozen=True)
class Sampling:
    """Which frames of an episode to use: every k-th, a fixed count spread evenly, or one per time step."""

    every: int = 1
    count: int | None = None
    step_s: float | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or (self.count is not None and self.count < 2) or (self.step_s or 1) <= 0:
            raise EpisodeSplitError(f"bad frame sampling {self}: every >= 1, count >= 2, step > 0")

    def select(self, times: tuple[int, ...]) -> tuple[int, ...]:
        """Pick receive times from a sorted episode; count wins over step, step over every."""
        if self.count is not None:
            if len(times) <= self.count:
                return times
            n = len(times) - 1
            return tuple(times[round(i * n / (self.count - 1))] for i in range(self.count))
        if self.step_s is not None:
            step = int(self.step_s * 1e9)
            picked: list[int] = []
            for t in times:
                if not picked or t - picked[-1] >= step:
                    picked.append(t)
            return tuple(picked)
        return times[:: self.every]


@dataclass(frozen=True)
class Episode:
    """A time span of one bag: its image receive times and the labels its markers carried."""

    bag: str
    index: int
    start_ns: int
    end_ns: int
    times: tuple[int, ...]
    labels: dict = field(default_factory=dict, compare=False)
    name: str = ""

    @property
    def key(self) -> str:
        """Identity of the episode in manifests and labels."""
        return f"{self.bag}#{self.index}"


def _spans_from_markers(markers: list[tuple[int, dict]], end_ns: int) -> list[tuple[int, int, dict]]:
    """start/end events open and close episodes; any other marker starts a new one."""
    spans: list[tuple[int, int, dict]] = []
    open_at: int | None = None
    open_labels: dict = {}
    for t, marker in markers:
        event = str(marker.get("event", marker.get("text", ""))).strip().lower()
        labels = marker.get("labels", {k: v for k, v in marker.items() if k not in ("event", "text")})
        labels = labels if isinstance(labels, dict) else {"value": labels}
        if event == "end":
            if open_at is not None:
                spans.append((open_at, t, {**open_labels, **labels}))
            open_at = None
            continue
        if open_at is not None:
            spans.append((open_at, t - 1, open_labels))
        open_at, open_labels = t, labels
    if open_at is not None:
        spans.append((open_at, end_ns, open_labels))
    return spans


def _spans_from_intervals(path: str, bag: str, start_ns: int) -> list[tuple[int, int, dict]]:
    """CSV with start_s,end_s (seconds from the bag start) or start_ns,end_ns; optional bag, name."""
    spans = []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.lstrip().startswith("#")))
    for n, row in enumerate(rows, start=2):
        if row.get("bag") and Path(row["bag"]).name != bag:
            continue
        try:
            if "start_ns" in row:
                lo, hi = int(row["start_ns"]), int(row["end_ns"])
            else:
                lo = start_ns + int(float(row["start_s"]) * 1e9)
                hi = start_ns + int(float(row["end_s"]) * 1e9)
        except (KeyError, TypeError, ValueError):
            raise EpisodeSplitError(
                f"intervals file {path} line {n}: need start_s,end_s or start_ns,end_ns columns"
            ) from None
        spans.append((lo, hi, {"name": row["name"]} if row.get("name") else {}))
    return spans


def find_episodes(bag: Bag, topic: str, split: Split) -> list[Episode]:
    """Episodes of one image topic of an open bag, in time order; never empty: no episode is an error."""
    info = bag.info()
    times = bag.timestamps(topic)
    if not times:
        raise EmptyImageTopicError(str(bag.path), [topic])
    name = bag_id(bag.path)
    if split.mode == "whole":
        spans = [(times[0], times[-1], {})]
    elif split.mode == "gap":
        spans, lo = [], None
        gap = int(split.gap_s * 1e9)
        for prev, t in zip([None, *times], times):
            if prev is None or t - prev > gap:
                if lo is not None:
                    spans.append((lo, prev, {}))
                lo = t
        if lo is not None:
            spans.append((lo, times[-1], {}))
    elif split.mode == "marker":
        if split.topic not in info.topics:
            raise EpisodeSplitError(f"bag {bag.path}: marker topic {split.topic!r} not found")
        if info.topics[split.topic] != STRING_MSGTYPE:
            raise EpisodeSplitError(
                f"bag {bag.path}: marker topic {split.topic} is {info.topics[split.topic]}, "
                f"need {STRING_MSGTYPE}"
            )
        spans = _spans_from_markers(bag.json_markers(split.topic), info.end_ns)
        if not spans:
            raise EpisodeSplitError(
                f"bag {bag.path}: marker topic {split.topic} ({info.counts[split.topic]} messages) marks no "
                "episode start: no episode boundaries; use --split whole or gap[:SECONDS]"
            )
    else:
        spans = _spans_from_intervals(split.file, name, info.start_ns)
        if not spans:
            raise EpisodeSplitError(f"bag {bag.path}: intervals file {split.file} has no row for {name}")
    episodes = []
    for index, (lo, hi, labels) in enumerate(spans):
        inside = tuple(t for t in times if lo <= t <= hi)
        title = str(labels.get("name", labels.get("motion", "")))  # sim markers name the scripted motion
        episodes.append(Episode(name, index, lo, hi, inside, labels, title))
    return episodes
