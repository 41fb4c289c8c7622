"""Typed errors of reading recordings: each names the bag, and what it has where something is missing."""

from __future__ import annotations

from spatial_mllm_ros.errors import SpatialMllmError


def topic_listing(topics: dict[str, str]) -> str:
    """List a bag's topics with their types, for messages that say what the bag has."""
    return ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "(none)"


class BagError(SpatialMllmError):
    """Base class of every bag-reading error."""


class BagReadError(BagError):
    """A bag cannot be opened or read (missing, truncated, corrupt, unknown storage)."""

    def __init__(self, bag: str, reason: str) -> None:
        super().__init__(f"bag {bag}: {reason}")
        self.bag = bag
        self.reason = reason


class NoImageTopicError(BagReadError):
    """The bag holds no sensor_msgs Image/CompressedImage topic (or not the one asked for)."""

    def __init__(self, bag: str, topics: dict[str, str], wanted: str | None = None) -> None:
        head = f"no image topic {wanted!r}" if wanted else "no image topic"
        super().__init__(bag, f"{head}; the bag's topics are: {topic_listing(topics)}")
        self.topics = topics
        self.wanted = wanted


class MissingTopicError(BagReadError):
    """A topic the caller named (CameraInfo, depth, /tf) is not in the bag with the type it needs."""

    def __init__(self, bag: str, topics: dict[str, str], wanted: str, what: str, hint: str = "") -> None:
        found = f" (it is {topics[wanted]})" if wanted in topics else ""
        super().__init__(bag, f"no {what} on {wanted}{found}{'; ' + hint if hint else ''}; the bag's topics "
                              f"are: {topic_listing(topics)}")
        self.topics = topics
        self.wanted = wanted


class BagFrameError(BagReadError):
    """A frame the caller named is missing from the bag's /tf and /tf_static, or not connected to the base."""


class EmptyImageTopicError(BagReadError):
    """The bag's image topics hold no message: a recording that never received a frame."""

    def __init__(self, bag: str, topics: list[str]) -> None:
        super().__init__(bag, f"image topic {', '.join(topics)} has 0 messages: the recording holds no "
                              "frames to label (was the camera publishing while it recorded?)")
        self.topics = topics


class AmbiguousImageTopicError(BagReadError):
    """Several image topics and none chosen: the user must pass --image-topic."""

    def __init__(self, bag: str, candidates: list[str]) -> None:
        super().__init__(bag, f"several image topics {candidates}; choose one with --image-topic")
        self.candidates = candidates


class EpisodeSplitError(BagError):
    """An episode split cannot be made (missing marker topic, bad intervals file, bad spec)."""
