"""The paper's 2012-era accelerator (Section 5), in a faithful and a corrected mode.

Stated hardware: unbounded external memory, a 1 GB/s bus to 1 MB of internal memory,
1 TFLOPS of matrix compute, 10 GFLOPS of generic host compute, no overlap, unbatched.
``faithful`` adds the counting rules the appendix actually follows (numbers and switches in
:class:`~hairlab.costmodel.target.Conventions`, plus two row rules of this module: the pools it
lists twice or adds before GAP; docs/paper-errata.md explains them); ``corrected`` counts the
same hardware correctly. The appendix's row names (``appendix_labels``) and the printed table
(``APPENDIX_REFERENCE``, for ``hw-report --compare-reference``) live here too: hairlab's core
knows no particular target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hairlab.costmodel.conventions import epilogue_suffix
from hairlab.costmodel.layers import Layer
from hairlab.costmodel.target import Conventions, Reference, Target, common_options

#: The generic rate the text states (10 GFLOPS) and the one the appendix's times imply.
STATED_GENERIC_FLOPS = 10e9
APPENDIX_GENERIC_FLOPS = 1e9
#: The appendix as printed (a clean transcription; 66 rows summing to 0.177 s).
APPENDIX = Path(__file__).with_name("appendix_table.csv")
APPENDIX_TOTAL_S = "0.177"
#: The appendix is of the faithful mode: a comparison rebuilds the target in it.
APPENDIX_REFERENCE = Reference(table=str(APPENDIX), total_s=APPENDIX_TOTAL_S, title="the paper's appendix",
                               options={"mode": "faithful"})
_POOL = ("maxpool", "avgpool")
_CONV = ("conv", "dwconv", "pwconv")

FAITHFUL = Conventions(
    fuse_bn_relu=True, bn_ops=4.0, relu_ops=1.0, pool_ops=1.0, softmax_ops=3.0,
    depthwise_ops="dense", locality="per_map", input_location="auto", append_softmax=True,
)
CORRECTED = Conventions(
    fuse_bn_relu=True, bn_ops=2.0, relu_ops=1.0, pool_ops=1.0, softmax_ops=3.0,
    depthwise_ops="grouped", locality="working_set", input_location="external", append_softmax=True,
)

def paper2012(*, mode: str, internal_memory: float, bus_bandwidth: float, matrix_flops: float,
              generic_flops: float | None, layer_overhead_s: float, **report: Any) -> Target:
    """The target from options already checked against ``Paper2012Options`` (the one definition).

    ``generic_flops`` null means what the mode implies; ``report`` are the options every
    target shares (batch size, overlap, data type, bytes per element, input size, fusion). The
    paper states one rate per unit, whatever the data type: every dtype runs at it (a narrower
    type only moves fewer bytes).
    """
    if generic_flops is None:
        generic_flops = APPENDIX_GENERIC_FLOPS if mode == "faithful" else STATED_GENERIC_FLOPS
    notes: tuple[str, ...] = ("Section 5: 1 GB/s bus, 1 MB internal memory, 1 TFLOPS matrix, 10 GFLOPS generic (stated)",)
    if mode == "faithful":
        notes += ("faithful: the appendix's rules (1 GFLOPS generic, depthwise counted as dense, "
                  "per-map locality, duplicated pools); see docs/paper-errata.md",)
    return Target(
        name="paper2012", mode=mode,
        description=f"HairNet paper's 2012 accelerator ({mode})",
        internal_memory=float(internal_memory), bus_bandwidth=float(bus_bandwidth),
        matrix_flops=float(matrix_flops), generic_flops=float(generic_flops),
        layer_overhead_s=float(layer_overhead_s),
        notes=notes, reference=APPENDIX_REFERENCE, label_rows=appendix_labels,
        row_rules=(pool_before_gap, duplicate_interstage_pools) if mode == "faithful" else (),
        **common_options(dict(report), FAITHFUL if mode == "faithful" else CORRECTED),
    )


# -- the appendix's own rows (faithful mode): listed, though the network never runs them ----------
def _neighbour_conv(layers: list[Layer], start: int, step: int) -> str | None:
    i = start
    while 0 <= i < len(layers):
        if layers[i].kind in _CONV:
            return layers[i].kind
        if layers[i].kind in _POOL or layers[i].kind == "gap":
            return None
        i += step
    return None


def duplicate_interstage_pools(layers: list[Layer]) -> list[Layer]:
    """The paper's rule: a pool between two depthwise-separable stages is listed twice."""
    out: list[Layer] = []
    for i, layer in enumerate(layers):
        out.append(layer)
        if layer.kind == "maxpool":
            before = _neighbour_conv(layers, i - 1, -1)
            after = _neighbour_conv(layers, i + 1, +1)
            if before in ("dwconv", "pwconv") and after == "dwconv":
                out.append(layer.copy(synthetic=True, name=f"{layer.name} (listed twice)"))
    return out


def pool_before_gap(layers: list[Layer]) -> list[Layer]:
    """The paper's rule: every stage ends in a 2x2 max pool, the last one included.

    The extra pool's output is a quarter of its input (even when the map has an odd side)
    and nothing reads it: the global average pool still reads the unpooled map.
    """
    out: list[Layer] = []
    for i, layer in enumerate(layers):
        prev = layers[i - 1] if i else None
        if layer.kind == "gap" and prev is not None and prev.kind not in _POOL:
            out.append(Layer(f"{layer.name} (pool before GAP)", "maxpool", layer.in_elems,
                             layer.in_elems // 4, 0, 0, layer.in_shape, (), {}, synthetic=True))
        out.append(layer)
    return out


def appendix_labels(layers: list[Layer]) -> None:
    """Label rows the way the appendix does (``dwise_conv0``, ``BN_RELU0_2``...).

    The block index restarts after each pool; a BN row takes its label from the conv before it.
    A conv row that fused the BN/ReLU after it (``fuse_conv_bn_relu``) is labelled with both
    names, ``pointwise_conv0+BN_RELU0_2``.
    """
    block, last_conv = 0, None

    def after_conv(base: str) -> str:
        return f"{base}{block}" if last_conv == "dw" else f"{base}{block}_2" if last_conv == "pw" else base

    for layer in layers:
        kind = layer.kind
        if kind in _POOL:
            layer.label, block, last_conv = "max_pool" if kind == "maxpool" else "avg_pool", 0, None
        elif kind in _CONV:
            layer.label, last_conv = {"dwconv": (f"dwise_conv{block}", "dw"),
                                      "pwconv": (f"pointwise_conv{block}", "pw"),
                                      "conv": ("conv2D", "conv")}[kind]
            suffix = epilogue_suffix(layer, "BN_RELU", "BN", "RELU")
            if suffix:
                layer.label += "+" + after_conv(suffix[1:])
                if "relu" in layer.attrs["epilogue"] and last_conv == "pw":
                    block, last_conv = block + 1, None
        elif kind in ("bn_relu", "bn", "relu"):
            layer.label = after_conv({"bn_relu": "BN_RELU", "bn": "BN", "relu": "RELU"}[kind])
            if kind != "bn" and last_conv == "pw":
                block += 1
                last_conv = None
        else:
            layer.label = {"gap": "GAP", "softmax": "SoftMax", "dense": "dense"}.get(kind) or (
                layer.attrs.get("module") or layer.attrs.get("functional") or kind)


