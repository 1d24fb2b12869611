"""Turn extracted layers into cost rows under a target's counting conventions.

Every rule here is general (it applies to any extracted model); its numbers and switches are
data in :class:`~hairlab.costmodel.target.Conventions`. A rule only one target follows (the
paper's duplicated pools) belongs to that target's plugin, as a ``Target.row_rules`` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hairlab.costmodel.layers import Layer
from hairlab.costmodel.target import Conventions

_CONV = ("conv", "dwconv", "pwconv")
_POOL = ("maxpool", "avgpool")


def fuse_bn_relu(layers: list[Layer]) -> list[Layer]:
    """A BN directly followed by a ReLU on its output becomes one ``bn_relu`` row."""
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        cur = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if cur.kind == "bn" and nxt is not None and nxt.kind == "relu" and nxt.in_elems == cur.out_elems:
            fused = cur.copy(kind="bn_relu", name=f"{cur.name}+{nxt.name.rsplit('.', 1)[-1]}")
            fused.attrs["sources"] = [cur.name, nxt.name]
            out.append(fused)
            i += 2
            continue
        out.append(cur)
        i += 1
    return out


def append_softmax(layers: list[Layer]) -> list[Layer]:
    """Count the softmax the loss applies, when the model ends in logits without one."""
    if not layers or layers[-1].kind == "softmax":
        return layers
    last = layers[-1]
    if not last.out_shape or any(d != 1 for d in last.out_shape[1:]):
        return layers  # not a vector of logits
    n = last.out_elems
    return [*layers, Layer("softmax", "softmax", n, n, 0, 0, last.out_shape, last.out_shape, synthetic=True)]


def generic_labels(layers: list[Layer]) -> None:
    """Label rows by kind and a running count per kind: ``conv1``, ``bn_relu1``, ``conv2``...

    A target that reproduces a printed table brings its own labelling (``Target.label_rows``).
    """
    counts: dict[str, int] = {}
    for layer in layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        layer.label = f"{layer.kind}{counts[layer.kind]}"


def apply(layers: list[Layer], conv: Conventions, label_rows: Callable[[list[Layer]], None] | None = None,
          row_rules: Sequence[Callable[[list[Layer]], list[Layer]]] = ()) -> list[Layer]:
    """The rows a target costs, in order, labelled (by ``label_rows``, else generically).

    ``row_rules`` are a target's own rewrites of the row list (e.g. rows a printed table lists
    that the model does not execute), applied after the general rules, before labelling.
    """
    rows = [layer.copy() for layer in layers]
    if conv.fuse_bn_relu:
        rows = fuse_bn_relu(rows)
    if conv.append_softmax:
        rows = append_softmax(rows)
    for rule in row_rules:
        rows = rule(rows)
    (label_rows or generic_labels)(rows)
    return rows


def count_ops(layer: Layer, conv: Conventions) -> float:
    """Operations of one row for one image, under the conventions."""
    kind = layer.kind
    if kind in _CONV:
        macs = layer.macs
        if kind == "dwconv" and conv.depthwise_ops == "dense":
            macs = layer.macs * int(layer.attrs.get("groups", 1))  # each output sees every input channel
        return 2.0 * macs + (layer.out_elems if layer.attrs.get("bias") else 0)
    if kind == "dense":
        return 2.0 * layer.macs + (layer.out_elems if layer.attrs.get("bias") else 0)
    if kind == "bn_relu":
        return (conv.bn_ops + conv.relu_ops) * layer.out_elems
    if kind == "bn":
        return conv.bn_ops * layer.out_elems
    if kind == "relu":
        return conv.relu_ops * layer.out_elems
    if kind in (*_POOL, "gap"):
        return conv.pool_ops * layer.in_elems
    if kind == "softmax":
        return conv.softmax_ops * layer.out_elems
    return conv.other_ops * layer.out_elems
