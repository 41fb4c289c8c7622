"""Reward annotation of rosbags with the spatial model: rubrics, labels, outputs (bag reading: bags/)."""

from spatial_mllm_ros.bags import Bag, BagInfo, Episode, Sampling, Split, find_episodes
from spatial_mllm_ros.reward.annotate import (
    RUBRIC_COPY,
    AnnotateConfig,
    AnnotateSummary,
    EpisodeScorer,
    annotate_bag,
    annotate_to_dir,
    run_batch,
)
from spatial_mllm_ros.reward.evaluate import RewardEvaluation, evaluate, evaluate_dir
from spatial_mllm_ros.reward.labels import BagResult, EpisodeResult, Label
from spatial_mllm_ros.reward.manifest import Manifest, read_results
from spatial_mllm_ros.reward.outputs import atomic_write_text, write_reward_bag
from spatial_mllm_ros.reward.rubric import Check, Progress, Rubric, load_rubric, parse_rubric
from spatial_mllm_ros.reward.scores import auc, spearman, value_order_correlation

__all__ = [
    "RUBRIC_COPY",
    "AnnotateConfig",
    "AnnotateSummary",
    "Bag",
    "BagInfo",
    "BagResult",
    "Check",
    "Episode",
    "EpisodeResult",
    "EpisodeScorer",
    "Label",
    "Manifest",
    "Progress",
    "RewardEvaluation",
    "Rubric",
    "Sampling",
    "Split",
    "annotate_bag",
    "annotate_to_dir",
    "atomic_write_text",
    "auc",
    "evaluate",
    "evaluate_dir",
    "find_episodes",
    "load_rubric",
    "parse_rubric",
    "read_results",
    "run_batch",
    "spearman",
    "value_order_correlation",
    "write_reward_bag",
]
