"""Fine-tuning recipe (`spatial-mllm train --recipe finetune`): recipe.run_finetune lists its steps."""

from __future__ import annotations

from spatial_mllm_ros.multispa.train.finetune.config import FinetuneRecipe
from spatial_mllm_ros.multispa.train.finetune.recipe import run_finetune
from spatial_mllm_ros.multispa.train.finetune.split import check_apart, recording_of, split_by_recording

__all__ = ["FinetuneRecipe", "check_apart", "recording_of", "run_finetune", "split_by_recording"]
