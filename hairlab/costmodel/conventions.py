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
_MATRIX = (*_CONV, "dense")
_POOL = ("maxpool", "avgpool")
#: Per-element ops of each layer kind a fused row can carry after its conv.
_EPILOGUE = ("bn", "relu")


def _follows(prev: Layer, nxt: Layer | None, kind: str) -> bool:
    """``nxt`` is a ``kind`` row applied to ``prev``'s output (same size: element-wise on it)."""
    return nxt is not None and nxt.kind == kind and nxt.in_elems == prev.out_elems


def _sources(layer: Layer) -> list[str]:
    return list(layer.attrs.get("sources", [layer.name]))


def _merge_pairs(layers: list[Layer], merge: Callable[[Layer, Layer], Layer | None]) -> list[Layer]:
    """Each pair of neighbouring rows that ``merge`` turns into one row is replaced by that row."""
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        merged = merge(layers[i], layers[i + 1]) if i + 1 < len(layers) else None
        out.append(layers[i] if merged is None else merged)
        i += 1 if merged is None else 2
    return out


def fold_bn(layers: list[Layer]) -> list[Layer]:
    """A BN directly after a conv (or dense) layer is folded into it (Algorithm 2, step 10).

    Inference BN is ``y = s * x + t`` per channel, with ``s = gamma / sqrt(Var[x] + eps)`` and
    ``t = beta - s * E[x]``; applied to ``x = W * in + b`` it is ``(s * W) * in + (s * b + t)``:
    the same layer with scaled weights and a bias. So the BN row (its pass over the map and its
    parameters) disappears, and the conv gains one bias per output channel (if it had none) and
    the bias add.
    """
    def fold(cur: Layer, nxt: Layer) -> Layer | None:
        if cur.kind not in _MATRIX or not _follows(cur, nxt, "bn"):
            return None
        channels = int(cur.attrs.get("out_channels") or cur.out_elems)
        folded = cur.copy(params=cur.params + (0 if cur.attrs.get("bias") else channels))
        folded.attrs.update(bias=True, folded_bn=nxt.name, sources=[*_sources(cur), *_sources(nxt)])
        return folded

    return _merge_pairs(layers, fold)


def fuse_conv_bn_relu(layers: list[Layer]) -> list[Layer]:
    """A conv (or dense) layer, then a BN and/or a ReLU on its output, become one row of the conv's kind.

    What a fused inference kernel does: the BN's scale and shift and the ReLU are applied to each
    output as it leaves the conv (its epilogue), so the conv's output map and the BN's are never
    written or read back. The row reads the conv's input, writes the last fused layer's output,
    carries every fused layer's parameters and operations (``attrs["epilogue"]``), and runs on
    the conv's unit.
    """
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        cur = layers[i]
        if cur.kind not in _MATRIX:
            out.append(cur)
            i += 1
            continue
        epilogue: list[Layer] = []
        j, last = i + 1, cur
        for kind in _EPILOGUE:
            nxt = layers[j] if j < len(layers) else None
            if nxt is not None and _follows(last, nxt, kind):
                epilogue.append(nxt)
                last, j = nxt, j + 1
        if not epilogue:
            out.append(cur)
            i += 1
            continue
        fused = cur.copy(out_elems=last.out_elems, out_shape=last.out_shape,
                         params=cur.params + sum(e.params for e in epilogue),
                         name="+".join([cur.name, *(e.name.rsplit(".", 1)[-1] for e in epilogue)]))
        fused.attrs["epilogue"] = [e.kind for e in epilogue]
        fused.attrs["sources"] = [*_sources(cur), *(s for e in epilogue for s in _sources(e))]
        out.append(fused)
        i = j
    return out


def fuse_bn_relu(layers: list[Layer]) -> list[Layer]:
    """A BN directly followed by a ReLU on its output becomes one ``bn_relu`` row."""
    def fuse(cur: Layer, nxt: Layer) -> Layer | None:
        if cur.kind != "bn" or nxt.kind != "relu" or nxt.in_elems != cur.out_elems:
            return None
        fused = cur.copy(kind="bn_relu", name=f"{cur.name}+{nxt.name.rsplit('.', 1)[-1]}")
        fused.attrs["sources"] = [cur.name, nxt.name]
        return fused

    return _merge_pairs(layers, fuse)


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
        layer.label = f"{layer.kind}{counts[layer.kind]}" + epilogue_suffix(layer, "bn_relu", "bn", "relu")


def epilogue_suffix(layer: Layer, both: str, bn: str, relu: str) -> str:
    """``+bn_relu`` (or ``+bn``, ``+relu``) for a fused row, in a labelling's own words; else ``""``."""
    epilogue = layer.attrs.get("epilogue") or []
    if not epilogue:
        return ""
    return "+" + (both if len(epilogue) == 2 else bn if epilogue == ["bn"] else relu)


def apply(layers: list[Layer], conv: Conventions, label_rows: Callable[[list[Layer]], None] | None = None,
          row_rules: Sequence[Callable[[list[Layer]], list[Layer]]] = ()) -> list[Layer]:
    """The rows a target costs, in order, labelled (by ``label_rows``, else generically).

    ``row_rules`` are a target's own rewrites of the row list (e.g. rows a printed table lists
    that the model does not execute), applied after the general rules, before labelling.
    """
    rows = [layer.copy() for layer in layers]
    if conv.fold_bn:
        rows = fold_bn(rows)
    if conv.fuse_conv_bn_relu:
        rows = fuse_conv_bn_relu(rows)
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
    if kind in _MATRIX:
        macs = layer.macs
        if kind == "dwconv" and conv.depthwise_ops == "dense":
            macs = layer.macs * int(layer.attrs.get("groups", 1))  # each output sees every input channel
        per_output = (1.0 if layer.attrs.get("bias") else 0.0) + sum(
            conv.bn_ops if e == "bn" else conv.relu_ops for e in layer.attrs.get("epilogue") or [])
        return 2.0 * macs + per_output * layer.out_elems
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
