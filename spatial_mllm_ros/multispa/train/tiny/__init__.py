"""SpatialMLLM-tiny's recipe (`spatial-mllm train --recipe tiny`): recipe.run_recipe lists its steps."""

from __future__ import annotations

from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.recipe import run_recipe

__all__ = ["TinyRecipe", "run_recipe"]
