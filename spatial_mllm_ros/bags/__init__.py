"""Bags (rosbag2: Humble to Jazzy, mcap and sqlite3) read without ROS: frames, markers, CameraInfo, /tf."""

from spatial_mllm_ros.bags.episodes import Episode, Sampling, Split, find_episodes
from spatial_mllm_ros.bags.errors import (
    AmbiguousImageTopicError,
    BagError,
    BagFrameError,
    BagReadError,
    EmptyImageTopicError,
    EpisodeSplitError,
    MissingTopicError,
    NoImageTopicError,
)
from spatial_mllm_ros.bags.reader import TF_TOPICS, TYPESTORES, Bag, BagInfo, bag_id, find_bags

__all__ = [
    "TF_TOPICS", "TYPESTORES", "AmbiguousImageTopicError", "Bag", "BagError", "BagFrameError", "BagInfo",
    "BagReadError", "EmptyImageTopicError", "Episode", "EpisodeSplitError", "MissingTopicError",
    "NoImageTopicError", "Sampling", "Split", "bag_id", "find_bags", "find_episodes",
]
