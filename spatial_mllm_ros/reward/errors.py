"""Typed errors of the reward annotator: each names the rubric key or file that is wrong.

Reading bags fails with spatial_mllm_ros.bags.errors (BagError), shared with the data engine.
"""

from __future__ import annotations


class RewardError(Exception):
    """Base class of every reward-annotation error."""


class EmptyEpisodeError(RewardError):
    """An episode has fewer frames than a rubric needs."""


class RubricError(RewardError):
    """A rubric file is invalid: unknown key, missing field, bad value."""


class ManifestError(RewardError):
    """The output directory holds a run made with different settings."""


class OutputError(RewardError):
    """An output cannot be written."""
