"""Assemble a network from a model config: stages of registry blocks, down-sampling, a head.

Nothing here knows HairNet: Table 1 lives in ``conf/model/hairnet_imagenet.yaml``. The
config keys (all but ``stages`` optional)::

    input_shape: [3, 224, 224]      # (C, H, W) the model expects; also used without data
    num_classes: 1000
    width_multiplier: 1.0           # scales every integer stage width
    block_defaults: {batch_norm: true}  # given to every block whose schema has the key
    downsample: max_pool            # between stages: max_pool | stride | none
    pool_size: 2                    # max_pool window (pool_stride defaults to it)
    stages:                         # the first stage is the stem
      - {block: conv_bn_relu, width: 32, repeat: 1, kernel_size: 3}
      - {block: dw_separable, width: num_classes, repeat: 2}   # one map per class
    head: {name: gap}

Per stage: ``block``, ``width`` (an int, or ``num_classes``, which the width multiplier leaves
alone), ``repeat`` (default 1), ``stride`` (of the stage's first block, default 1),
``downsample`` (whether to down-sample after it; default true except after the last stage);
every other key is an option of the block.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from hairlab.errors import HairlabError
from hairlab.models.options import validate_options

_STAGE_KEYS = {"block", "width", "repeat", "stride", "downsample"}
DOWNSAMPLE = ("max_pool", "stride", "none")


def _plain(cfg: Any) -> dict[str, Any]:
    """A resolved plain dict from a DictConfig or mapping."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise HairlabError(f"model config must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def model_input_shape(model_cfg: Any) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a model config declares (for building it without data)."""
    cfg = _plain(model_cfg)
    shape = cfg.get("input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise HairlabError(
            f"model.input_shape must be [channels, height, width], got {shape!r}; "
            "set it in the model config, e.g. model.input_shape=[3,32,32]"
        )
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def model_num_classes(model_cfg: Any) -> int:
    """The number of classes a model config declares."""
    value = _plain(model_cfg).get("num_classes")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HairlabError(f"model.num_classes must be a positive integer, got {value!r}")
    return value


def _width(stage: Mapping[str, Any], where: str, multiplier: float, num_classes: int) -> int:
    width = stage.get("width")
    if width == "num_classes":
        return num_classes
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise HairlabError(f"{where}.width must be a positive integer or 'num_classes', got {width!r}")
    return max(1, round(width * multiplier))


def _block_options(entry: Any, stage: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict:
    fields = {f.name for f in dataclasses.fields(entry.schema)} if entry.schema else None
    opts = {k: v for k, v in defaults.items() if fields is None or k in fields}
    opts.update({k: v for k, v in stage.items() if k not in _STAGE_KEYS})
    return validate_options(entry, opts, where)


def build_model(model_cfg: Any, *, num_classes: int | None = None,
                input_shape: tuple[int, int, int] | None = None) -> Any:
    """The ``torch.nn.Module`` a model config describes.

    ``num_classes`` and ``input_shape`` override the config's (the training job passes the
    dataset's, so a model config works with any dataset).
    """
    import torch
    from torch import nn

    from hairlab.models.net import ConvNet
    from hairlab.plugin_manager import registry

    cfg = _plain(model_cfg)
    num_classes = int(num_classes) if num_classes is not None else model_num_classes(cfg)
    shape = tuple(input_shape) if input_shape is not None else model_input_shape(cfg)
    multiplier = float(cfg.get("width_multiplier", 1.0))
    if multiplier <= 0:
        raise HairlabError(f"model.width_multiplier must be > 0, got {multiplier}")
    downsample = str(cfg.get("downsample", "max_pool"))
    if downsample not in DOWNSAMPLE:
        raise HairlabError(
            f"model.downsample={downsample!r} is unknown; choose one of {', '.join(DOWNSAMPLE)}")
    pool_size = int(cfg.get("pool_size", 2))
    pool_stride = int(cfg.get("pool_stride") or pool_size)
    defaults = dict(cfg.get("block_defaults") or {})
    stages = cfg.get("stages") or []
    if not stages:
        raise HairlabError("model.stages is empty; a model config needs at least one stage")

    blocks = registry("blocks")
    body: OrderedDict[str, nn.Module] = OrderedDict()
    channels = shape[0]
    carry_stride = 1
    for i, stage in enumerate(stages, start=1):
        where = f"model.stages[{i - 1}]"
        if not isinstance(stage, Mapping) or "block" not in stage:
            raise HairlabError(f"{where} must be a mapping with at least 'block' and 'width'")
        entry = blocks.get(str(stage["block"]))
        width = _width(stage, where, multiplier, num_classes)
        opts = _block_options(entry, stage, defaults, where)
        repeat = int(stage.get("repeat", 1))
        first_stride = max(int(stage.get("stride", 1)), carry_stride)
        layers = OrderedDict()
        for r in range(repeat):
            try:
                layers[f"block{r + 1}"] = entry.factory(channels, width, stride=first_stride if r == 0 else 1,
                                                        **opts)
            except (TypeError, ValueError) as exc:
                raise HairlabError(f"{where}: block {entry.name!r} rejected its options: {exc}") from None
            channels = width
        body[f"stage{i}"] = nn.Sequential(layers)
        last = i == len(stages)
        carry_stride = 1
        if bool(stage.get("downsample", not last)) and downsample != "none":
            if downsample == "max_pool":
                body[f"pool{i}"] = nn.MaxPool2d(pool_size, pool_stride)
            else:
                carry_stride = 2

    head_cfg = dict(cfg.get("head") or {"name": "gap"})
    head_entry = registry("heads").get(str(head_cfg.pop("name", "gap")))
    head_opts = validate_options(head_entry, head_cfg, "model.head")
    try:
        head = head_entry.factory(channels, num_classes, **head_opts)
    except (TypeError, ValueError) as exc:
        raise HairlabError(f"model.head: head {head_entry.name!r} rejected its options: {exc}") from None

    model = ConvNet(nn.Sequential(body), head, input_shape=shape, num_classes=num_classes,
                    name=str(cfg.get("name", "model")))
    with torch.no_grad():  # fail here, with the config named, rather than mid-training
        try:
            out = model.eval()(torch.zeros(1, *shape))
        except RuntimeError as exc:
            raise HairlabError(f"model {model.name!r} cannot run on input {list(shape)}: {exc}") from None
    model.train()
    if tuple(out.shape) != (1, num_classes):
        raise HairlabError(
            f"model {model.name!r} outputs shape {tuple(out.shape)}, expected (N, {num_classes})")
    return model


def count_parameters(module: Any, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; buffers such as BN running statistics excluded."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def stage_parameters(model: Any) -> dict[str, int]:
    """Parameters per stage (``stage1``..) and of the ``head``, in model order."""
    out = {name: count_parameters(m) for name, m in model.body.named_children() if name.startswith("stage")}
    out["head"] = count_parameters(model.head)
    return out
