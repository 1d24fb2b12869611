"""The ``model`` config's schema: the keys the builder itself reads (stages and head aside).

A stage is ``{block, width, repeat, stride, downsample, shrink}`` plus the options of its block (checked
against that block's schema); the head is ``{name, ...options}`` (checked against the head's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from hairlab.contract.schema import opt

DOWNSAMPLE = ("max_pool", "stride", "none")
#: Keys of a stage that are the builder's, not the block's.
STAGE_KEYS = ("block", "width", "repeat", "stride", "downsample", "shrink")


@dataclass
class ModelConfig:
    """A network: stages of registry blocks with down-sampling between them, then a registry head."""

    stages: list[Any] = opt(help="the stages, the first one the stem: {block, width, repeat, stride, "
                                 "downsample, ...block options}; width may be 'num_classes'")
    head: Optional[dict[str, Any]] = opt(None, "the head: {name: HEAD, ...its options} (see `hairlab list heads`)")
    name: str = opt("model", "the model's name in reports and run names")
    input_shape: Optional[list[int]] = opt(None, "[C, H, W] the model expects; a training run uses its "
                                                 "dataset's")
    num_classes: Optional[int] = opt(None, "classes; a training run uses its dataset's")
    width_multiplier: float = opt(1.0, "scales every integer stage width (not 'num_classes'; a stage with "
                                       "shrink: false only grows)")
    width_divisor: Optional[int] = opt(None, "round scaled widths to a multiple of this (MobileNet's 8: never "
                                             "below it, nor below 90% of the scaled width); null = nearest integer")
    batch_norm: Optional[bool] = opt(None, "given to every block that has a batch_norm option "
                                           "(false: conv biases instead); null = the blocks' own")
    block_defaults: dict[str, Any] = opt(help="options given to every block whose schema has the key",
                                         factory=dict)
    downsample: Literal["max_pool", "stride", "none"] = opt(
        "max_pool", "between stages: max_pool, stride (the next stage's first block strides 2) or none")
    pool_size: int = opt(2, "max_pool window")
    pool_stride: Optional[int] = opt(None, "max_pool stride; null = pool_size")

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages is empty: a model config needs at least one stage")
        if self.head is None:
            raise ValueError("head is missing: set model.head.name=NAME (see `hairlab list heads`)")
        if not self.width_multiplier > 0:
            raise ValueError(f"width_multiplier={self.width_multiplier}: expected a number > 0")
        if self.width_divisor is not None and self.width_divisor < 1:
            raise ValueError(f"width_divisor={self.width_divisor}: expected an integer >= 1 or null")
        if self.pool_size < 1:
            raise ValueError(f"pool_size={self.pool_size}: expected an integer >= 1")
        if self.pool_stride is not None and self.pool_stride < 1:
            raise ValueError(f"pool_stride={self.pool_stride}: expected an integer >= 1 or null")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes}: expected a positive integer")
        if self.input_shape is not None and (len(self.input_shape) != 3 or min(self.input_shape) < 1):
            raise ValueError(f"input_shape={self.input_shape}: expected [channels, height, width], "
                             "e.g. model.input_shape=[3,32,32]")
