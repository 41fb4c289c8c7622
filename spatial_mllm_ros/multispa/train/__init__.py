"""Training: the general trainer (any supported family) and the recipes tiny/ and finetune/."""

from spatial_mllm_ros.multispa.train.config import DataSource, TrainConfig
from spatial_mllm_ros.multispa.train.errors import (
    FamilyMismatchError,
    NoTrainingDataError,
    ResumeError,
    TrainConfigError,
    TrainError,
)
from spatial_mllm_ros.multispa.train.loop import Trainer, TrainResult, train

__all__ = [
    "DataSource",
    "FamilyMismatchError",
    "NoTrainingDataError",
    "ResumeError",
    "TrainConfig",
    "TrainConfigError",
    "TrainError",
    "TrainResult",
    "Trainer",
    "train",
]
