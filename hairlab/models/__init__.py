"""Models assembled from configs: stages of registry blocks, down-sampling and a registry head."""

from __future__ import annotations

from hairlab.models.builder import (
    build_model,
    count_parameters,
    model_input_shape,
    model_num_classes,
    plan_model,
    stage_parameters,
)

__all__ = [
    "build_model",
    "count_parameters",
    "model_input_shape",
    "model_num_classes",
    "plan_model",
    "stage_parameters",
]
