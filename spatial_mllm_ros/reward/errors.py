"""Typed errors of the reward annotator: each names the bag, topic, key or file that is wrong."""

from __future__ import annotations


class RewardError(Exception):
    """Base class of every reward-annotation error."""


class BagReadError(RewardError):
    """A bag cannot be opened or read (missing, truncated, corrupt, unknown storage)."""

    def __init__(self, bag: str, reason: str) -> None:
        super().__init__(f"bag {bag}: {reason}")
        self.bag = bag
        self.reason = reason


class NoImageTopicError(BagReadError):
    """The bag holds no sensor_msgs Image/CompressedImage topic (or not the one asked for)."""

    def __init__(self, bag: str, topics: dict[str, str], wanted: str | None = None) -> None:
        listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "(none)"
        head = f"no image topic {wanted!r}" if wanted else "no image topic"
        super().__init__(bag, f"{head}; the bag's topics are: {listing}")
        self.topics = topics
        self.wanted = wanted


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


class EpisodeSplitError(RewardError):
    """An episode split cannot be made (missing marker topic, bad intervals file, bad spec)."""


class EmptyEpisodeError(RewardError):
    """An episode has fewer frames than a rubric needs."""


class RubricError(RewardError):
    """A rubric file is invalid: unknown key, missing field, bad value."""


class ManifestError(RewardError):
    """The output directory holds a run made with different settings."""


class OutputError(RewardError):
    """An output cannot be written."""
