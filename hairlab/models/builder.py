"""Assemble a network from a model config: stages of registry blocks, down-sampling, a head.

Nothing here knows a particular network or plugin: Table 1 lives in
``conf/model/hairnet_imagenet.yaml``, the keys in :class:`hairlab.models.config.ModelConfig`,
the blocks and heads in the plugin host passed in. Two named steps: :func:`plan_model` checks
the config (the builder's keys, each stage's block options against the block's schema, the
head's against the head's; no torch, so the whole-config check runs it before a job), then
:func:`build_model` calls the factories, joins body and head and probes the result once.

Per stage: ``block``, ``width`` (an int, or ``num_classes``, which the width multiplier leaves
alone), ``repeat`` (default 1), ``stride`` (of the stage's first block, default 1),
``downsample`` (whether to down-sample after it; default true except after the last stage),
``shrink`` (default true; false: a width multiplier below 1 leaves the width alone);
every other key is an option of the block. The head has no default: ``head: {name: ...}``.
A block schema with a ``check_channels(in_channels, out_channels)`` method is asked about
every block's channels at plan time (e.g. groups that must divide them), before any run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hairlab.contract import entries as contract
from hairlab.contract.convert import to_dict
from hairlab.contract.schema import check
from hairlab.errors import HairlabError
from hairlab.models.config import DOWNSAMPLE, STAGE_KEYS, ModelConfig

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost
    from hairlab.registry import Entry

__all__ = ["DOWNSAMPLE", "ModelPlan", "StagePlan", "build_model", "model_input_shape", "model_num_classes",
           "plan_model"]


def _mapping(model_cfg: Any) -> dict[str, Any]:
    if model_cfg is None:
        raise HairlabError("the config has no model; choose one with model=NAME (see `hairlab run --help`)")
    try:
        return to_dict(model_cfg)
    except HairlabError:
        raise HairlabError(f"model config must be a mapping, got {type(model_cfg).__name__}") from None


def model_input_shape(model_cfg: Any) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a model config declares (for building it without data)."""
    shape = _mapping(model_cfg).get("input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise HairlabError(
            f"model.input_shape must be [channels, height, width], got {shape!r}; "
            "set it in the model config, e.g. model.input_shape=[3,32,32]"
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def model_num_classes(model_cfg: Any) -> int:
    """The number of classes a model config declares."""
    value = _mapping(model_cfg).get("num_classes")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HairlabError(f"model.num_classes must be a positive integer, got {value!r}; set model.num_classes=N")
    return value


@dataclass
class StagePlan:
    """One stage, checked: its block entry and options, width, repeats and down-sampling."""

    where: str
    entry: Entry
    options: dict[str, Any]
    width: int
    repeat: int
    stride: int
    downsample: bool


@dataclass
class ModelPlan:
    """A model config fully checked against the builder's and every entry's schema; no torch yet."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    downsample: str
    pool_size: int
    pool_stride: int
    stages: list[StagePlan]
    head: Entry
    head_options: dict[str, Any]


def _positive(stage: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = stage.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HairlabError(f"{where}.{key}={value!r}: expected a positive integer")
    return value


def make_divisible(value: float, divisor: int) -> int:
    """``value`` rounded to a multiple of ``divisor``, never below it nor below 90% of ``value``.

    The rounding of MobileNet's reference code (Sandler et al. 2018; torchvision's
    ``_make_divisible``), so width-multiplier variants get the published widths.
    """
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def _width(stage: Mapping[str, Any], where: str, cfg: ModelConfig, num_classes: int) -> int:
    width = stage.get("width")
    if width == "num_classes":
        return num_classes
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise HairlabError(f"{where}.width={width!r}: expected a positive integer or 'num_classes'")
    shrink = stage.get("shrink", True)
    if not isinstance(shrink, bool):
        raise HairlabError(f"{where}.shrink={shrink!r}: expected true or false")
    multiplier = cfg.width_multiplier if shrink else max(1.0, cfg.width_multiplier)
    if cfg.width_divisor is not None:
        return make_divisible(width * multiplier, cfg.width_divisor)
    return max(1, round(width * multiplier))


def _plan_stage(host: PluginHost, i: int, stage: Any, cfg: ModelConfig, num_classes: int, last: bool
                ) -> StagePlan:
    where = f"model.stages[{i}]"
    if not isinstance(stage, Mapping) or "block" not in stage:
        raise HairlabError(f"{where} must be a mapping with at least 'block' and 'width', got {stage!r}")
    entry = host.registry("blocks").get(str(stage["block"]))
    schema = contract.schema_of(entry, "blocks")
    known = None if schema is None else {o for o in getattr(schema, "__dataclass_fields__", {})}
    shared = dict(cfg.block_defaults)
    if cfg.batch_norm is not None:
        shared["batch_norm"] = cfg.batch_norm
    opts = {k: v for k, v in shared.items() if known is None or k in known}
    opts.update({k: v for k, v in stage.items() if k not in STAGE_KEYS})
    options = check(schema, opts, where=where, owner=contract.owner(entry, "blocks", host))
    downsample = stage.get("downsample", not last)
    if not isinstance(downsample, bool):
        raise HairlabError(f"{where}.downsample={downsample!r}: expected true or false")
    return StagePlan(where, entry, options, _width(stage, where, cfg, num_classes),
                     _positive(stage, "repeat", where, 1), _positive(stage, "stride", where, 1), downsample)


def _check_channels(stages: list[StagePlan], channels: int) -> None:
    """Ask each block schema that can (``check_channels``) whether its channels suit its options."""
    for stage in stages:
        schema = contract.schema_of(stage.entry, "blocks")
        if schema is not None and callable(getattr(schema, "check_channels", None)):
            try:
                schema(**stage.options).check_channels(channels, stage.width)
                if stage.repeat > 1:
                    schema(**stage.options).check_channels(stage.width, stage.width)
            except ValueError as exc:
                raise HairlabError(f"{stage.where}: {exc}") from None
        channels = stage.width


def plan_model(model_cfg: Any, host: PluginHost, *, num_classes: int | None = None,
               input_shape: tuple[int, int, int] | None = None) -> ModelPlan:
    """Check a model config against the builder's schema and every block's and the head's.

    ``num_classes`` and ``input_shape`` override the config's (the training job passes the
    dataset's, so a model config works with any dataset). Imports no torch: the whole-config
    check runs this before a job starts.
    """
    data = _mapping(model_cfg)
    data.pop("defaults", None)  # Hydra's defaults list, when a preset YAML is read without Hydra
    cfg = ModelConfig(**check(ModelConfig, data, where="model", owner="the model config"))
    classes = int(num_classes) if num_classes is not None else model_num_classes(data)
    shape = tuple(input_shape) if input_shape is not None else model_input_shape(data)
    stages = [_plan_stage(host, i, s, cfg, classes, i == len(cfg.stages) - 1) for i, s in enumerate(cfg.stages)]
    _check_channels(stages, shape[0])
    head, head_options = contract.validate(host, "heads", cfg.head, where="model.head")
    return ModelPlan(cfg.name, shape, classes, cfg.downsample, cfg.pool_size,  # type: ignore[arg-type]
                     cfg.pool_stride or cfg.pool_size, stages, head, head_options)


def _build_body(plan: ModelPlan, host: PluginHost) -> tuple[Any, int]:
    """The stages and pools, in order, and the channels the head receives."""
    from torch import nn

    body: OrderedDict[str, nn.Module] = OrderedDict()
    channels = plan.input_shape[0]
    carry_stride = 1
    for i, stage in enumerate(plan.stages, start=1):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        first_stride = max(stage.stride, carry_stride)
        for r in range(stage.repeat):
            layers[f"block{r + 1}"] = contract.call(stage.entry, "blocks", stage.options, channels, stage.width,
                                                    host=host, stride=first_stride if r == 0 else 1)
            channels = stage.width
        body[f"stage{i}"] = nn.Sequential(layers)
        carry_stride = 1
        if stage.downsample and plan.downsample == "max_pool":
            body[f"pool{i}"] = nn.MaxPool2d(plan.pool_size, plan.pool_stride)
        elif stage.downsample and plan.downsample == "stride":
            carry_stride = 2
    return nn.Sequential(body), channels


def _probe(model: Any, plan: ModelPlan) -> None:
    """Run one zero image through ``model``: fail here, with the config named, not mid-training."""
    import torch

    with torch.no_grad():
        try:
            out = model.eval()(torch.zeros(1, *plan.input_shape))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise HairlabError(f"model {plan.name!r} cannot run on input {list(plan.input_shape)}: {first}") \
                from None
    model.train()
    if tuple(out.shape) != (1, plan.num_classes):
        raise HairlabError(f"model {plan.name!r} outputs shape {tuple(out.shape)}, expected "
                           f"(N, {plan.num_classes}) (num_classes); check the last stage's width and the head")


def build_model(model_cfg: Any, host: PluginHost, *, num_classes: int | None = None,
                input_shape: tuple[int, int, int] | None = None) -> Any:
    """The ``torch.nn.Module`` a model config describes, from the blocks and heads of ``host``."""
    from hairlab.models.net import ConvNet

    plan = plan_model(model_cfg, host, num_classes=num_classes, input_shape=input_shape)
    body, channels = _build_body(plan, host)
    head = contract.call(plan.head, "heads", plan.head_options, channels, plan.num_classes, host=host)
    model = ConvNet(body, head, input_shape=plan.input_shape, num_classes=plan.num_classes, name=plan.name)
    _probe(model, plan)
    return model


def count_parameters(module: Any, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; buffers such as BN running statistics excluded."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def stage_parameters(model: Any) -> dict[str, int]:
    """Parameters per stage (``stage1``..) and of the ``head``, in model order."""
    out = {name: count_parameters(m) for name, m in model.body.named_children() if name.startswith("stage")}
    out["head"] = count_parameters(model.head)
    return out
