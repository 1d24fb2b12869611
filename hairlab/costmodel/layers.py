"""Layer extraction: run one real forward pass and record what a cost model needs per layer.

The model itself is the only source of truth (no second description of the architecture):
forward hooks on every leaf module give the executed layers in execution order with their
real input and output sizes, and a ``TorchFunctionMode`` catches the few functional calls a
block may make outside any leaf module (``F.relu``, ``x + y``, ``x.mean((2, 3))``...).
Leaf modules are classified by type and convolution geometry; anything unknown becomes a
generic ``other`` layer with its measured sizes, so third-party blocks always work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Layer kinds the cost engine understands.
KINDS = (
    "conv", "dwconv", "pwconv", "dense", "bn", "relu", "bn_relu", "maxpool", "avgpool", "gap",
    "softmax", "add", "other",
)
#: Leaf modules that cost nothing (views, identities, training-only noise).
_FREE = ("Identity", "Flatten", "Unflatten", "Dropout", "Dropout2d", "Dropout1d", "AlphaDropout")
_ACTIVATIONS = ("ReLU", "ReLU6", "LeakyReLU", "Hardtanh", "SiLU", "GELU", "Hardswish", "Sigmoid", "Tanh",
                "ELU")


@dataclass
class Layer:
    """One executed layer, sizes per image (batch 1) in elements."""

    name: str
    kind: str
    in_elems: int
    out_elems: int
    params: int = 0
    macs: int = 0
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    #: Geometry for convolutions (``kernel``, ``in_channels``, ``out_channels``, ``groups``)
    #: and ``bias``; conventions such as the paper's depthwise op count need it.
    attrs: dict[str, Any] = field(default_factory=dict)
    #: The row's name in a report (``conv1``, or the target's own labels), filled by the conventions.
    label: str = ""
    #: True for rows that only a convention adds (the paper's duplicated pools).
    synthetic: bool = False

    def copy(self, **changes: Any) -> Layer:
        data = {**self.__dict__, "attrs": dict(self.attrs), **changes}
        return Layer(**data)


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape)) if shape else 1


def _tensors(obj: Any) -> list[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _per_image(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) if len(shape) > 1 else tuple(shape)


def _conv_layer(name: str, module: Any, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> Layer:
    weight = module.weight
    out_ch, in_per_group = int(weight.shape[0]), int(weight.shape[1])
    kernel = tuple(int(k) for k in weight.shape[2:])
    groups = int(module.groups)
    in_ch = in_per_group * groups
    out_elems = _numel(y_shape)
    macs = out_elems * in_per_group * _numel(kernel)
    if groups == in_ch and groups > 1 and out_ch % in_ch == 0:
        kind = "dwconv"
    elif groups == 1 and all(k == 1 for k in kernel):
        kind = "pwconv"
    else:
        kind = "conv"
    params = sum(int(p.numel()) for p in module.parameters(recurse=False))
    attrs = {"kernel": kernel, "in_channels": in_ch, "out_channels": out_ch, "groups": groups,
             "bias": module.bias is not None, "stride": tuple(getattr(module, "stride", ()))}
    return Layer(name, kind, _numel(x_shape), out_elems, params, macs, x_shape, y_shape, attrs)


def _is_global_pool(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> bool:
    """(C, H, W) -> (C,) or (C, 1, 1): a global pool whatever the module calls itself."""
    if len(x_shape) != 3 or x_shape[1] * x_shape[2] == 1:
        return False
    return y_shape in ((x_shape[0],), (x_shape[0], 1, 1))


def classify(name: str, module: Any, xs: list[tuple[int, ...]], ys: list[tuple[int, ...]]) -> Layer | None:
    """A :class:`Layer` for one executed leaf module (shapes per image), or None if free."""
    from torch import nn

    x_shape = xs[0] if xs else ()
    y_shape = ys[0] if ys else ()
    in_elems = sum(_numel(s) for s in xs)
    out_elems = sum(_numel(s) for s in ys)
    params = sum(int(p.numel()) for p in module.parameters(recurse=False))
    cls = type(module).__name__
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return _conv_layer(name, module, x_shape, y_shape)
    if cls in _FREE:
        return None
    layer = Layer(name, "other", in_elems, out_elems, params, 0, x_shape, y_shape)
    if isinstance(module, nn.Linear):
        layer.kind, layer.macs = "dense", out_elems * int(module.in_features)
        layer.attrs["bias"] = module.bias is not None
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        layer.kind = "bn"
    elif cls in _ACTIVATIONS:
        layer.kind = "relu"
        layer.attrs["activation"] = cls
    elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)):
        layer.kind = "gap" if _is_global_pool(x_shape, y_shape) else "maxpool"
    elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d)) or _is_global_pool(
            x_shape, y_shape):
        layer.kind = "gap" if _is_global_pool(x_shape, y_shape) else "avgpool"
    elif isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        layer.kind = "softmax"
    if layer.kind == "other":
        layer.attrs["module"] = cls
    return layer


# -- functional calls outside leaf modules ---------------------------------------------------
_FUNC_KINDS = {
    "relu": "relu", "relu_": "relu", "relu6": "relu", "hardtanh": "relu", "silu": "relu", "gelu": "relu",
    "max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool",
    "avg_pool2d": "avgpool", "adaptive_avg_pool2d": "avgpool", "mean": "avgpool",
    "add": "add", "__add__": "add", "__iadd__": "add", "add_": "add", "__radd__": "add",
    "mul": "add", "__mul__": "add",
    "softmax": "softmax", "log_softmax": "softmax",
    "linear": "dense", "conv2d": "conv",
}


def _func_layer(func: Any, args: tuple, kwargs: dict, result: Any, index: int) -> Layer | None:
    import torch

    fname = getattr(func, "__name__", "")
    kind = _FUNC_KINDS.get(fname)
    if kind is None:
        return None
    ins = [t for t in _tensors(list(args) + list(kwargs.values()))]
    outs = _tensors(result)
    if not ins or not outs:
        return None
    params = sum(int(t.numel()) for t in ins if isinstance(t, torch.nn.Parameter))
    acts = [t for t in ins if not isinstance(t, torch.nn.Parameter)]
    xs = [_per_image(tuple(t.shape)) for t in acts]
    ys = [_per_image(tuple(t.shape)) for t in outs[:1]]
    x_shape, y_shape = (xs[0] if xs else ()), ys[0]
    layer = Layer(f"F.{fname}#{index}", kind, sum(_numel(s) for s in xs), _numel(y_shape), params, 0,
                  x_shape, y_shape, {"functional": fname})
    if kind == "avgpool" and _is_global_pool(x_shape, y_shape):
        layer.kind = "gap"
    elif kind == "avgpool" and fname == "mean":
        return None  # a mean that is not a spatial pool (e.g. a loss), not a layer
    elif kind == "dense":
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if weight is None:
            return None  # not a call we can cost (no weight to read the size from)
        layer.macs = _numel(y_shape) * int(weight.shape[-1])
        layer.attrs["bias"] = (len(args) > 2 and args[2] is not None) or kwargs.get("bias") is not None
    elif kind == "conv":
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if weight is None:
            return None
        groups = int(args[6] if len(args) > 6 else kwargs.get("groups", 1))
        out_ch, in_pg = int(weight.shape[0]), int(weight.shape[1])
        kernel = tuple(int(k) for k in weight.shape[2:])
        layer.macs = _numel(y_shape) * in_pg * _numel(kernel)
        in_ch = in_pg * groups
        layer.kind = ("dwconv" if groups == in_ch and groups > 1 else
                      "pwconv" if groups == 1 and all(k == 1 for k in kernel) else "conv")
        layer.attrs.update(kernel=kernel, in_channels=in_ch, out_channels=out_ch, groups=groups,
                           bias=len(args) > 2 and args[2] is not None)
    return layer


def extract_layers(model: Any, input_shape: tuple[int, ...]) -> list[Layer]:
    """The layers ``model`` executes on one ``input_shape`` image, in execution order.

    The model runs once in eval mode under ``torch.no_grad`` on a zero input; its training
    mode is restored afterwards.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    from hairlab.errors import HairlabError

    layers: list[Layer] = []
    depth = [0]
    handles = []

    def pre_hook(module: Any, args: Any) -> None:
        depth[0] += 1

    def make_hook(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            depth[0] -= 1
            xs = [_per_image(tuple(t.shape)) for t in _tensors(args)]
            ys = [_per_image(tuple(t.shape)) for t in _tensors(output)]
            layer = classify(name, module, xs, ys)
            if layer is not None:
                layers.append(layer)
        return hook

    class _Functionals(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if depth[0] == 0:
                layer = _func_layer(func, args, kwargs, result, len(layers))
                if layer is not None:
                    layers.append(layer)
            return result

    for name, module in model.named_modules():
        if next(module.children(), None) is None:  # a leaf (or a model that is a single module)
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(make_hook(name or type(module).__name__)))
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        device = param.device if param is not None else "cpu"
        x = torch.zeros(1, *input_shape, dtype=dtype, device=device)
        model.eval()
        with torch.no_grad(), _Functionals():
            model(x)
    except RuntimeError as exc:
        raise HairlabError(f"the model cannot run on input {list(input_shape)}: {str(exc).splitlines()[0]}"
                           " (check hardware.input_size or the model's input_shape)") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return layers
