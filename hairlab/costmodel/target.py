"""The hardware target data model: memory levels, bus, compute rates, and counting rules.

A target is data plus rules. The data are the numbers a datasheet (or a calibration) gives;
the rules (:class:`Conventions`) say how layers are counted and placed. Keeping the rules
explicit is what lets one engine reproduce the paper's appendix (its own, partly wrong,
rules) and also compute what the same hardware would really do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from hairlab.contract.schema import opt
from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.costmodel.layers import Layer

#: Layer kinds that run on the matrix unit unless a target says otherwise.
MATRIX_KINDS = ("conv", "dwconv", "pwconv", "dense")
LOCALITY = ("per_map", "working_set")
INPUT_LOCATION = ("auto", "external", "internal")
DEPTHWISE_OPS = ("grouped", "dense")
#: The data types a target can be costed at, and the bytes of one element of each.
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
DType = Literal["fp32", "bf16", "fp16", "int8"]
#: The fusion conventions a target's options can switch (``TargetOptions``).
FUSION_OPTIONS = ("fuse_conv_bn_relu", "fold_bn")


@dataclass(frozen=True)
class Conventions:
    """How layers are counted and where their operands live."""

    #: Merge a BN followed by a ReLU into one ``bn_relu`` row (one pass over the map).
    fuse_bn_relu: bool = True
    #: Merge a conv (or dense) layer and the BN and/or ReLU right after it into one row of the
    #: conv's kind: one pass, the intermediate maps are never written (an inference runtime's or
    #: an NPU's fused kernel). The BN/ReLU work is counted in the row and runs on the conv's unit.
    fuse_conv_bn_relu: bool = False
    #: Fold a BN that directly follows a conv (or dense) layer into its weights and bias (the
    #: paper's Algorithm 2, step 10: ``y = gamma/sqrt(Var+eps) * x + (beta - gamma*E[x]/sqrt(Var+eps))``
    #: is an affine map per channel): the BN row disappears, the conv gains a bias.
    fold_bn: bool = False
    #: Generic operations per element. Inference BN folds to one scale and one shift (2);
    #: the paper's appendix counts 4 (subtract mean, divide by std, scale, shift).
    bn_ops: float = 2.0
    relu_ops: float = 1.0
    #: Per input element (one compare or add each).
    pool_ops: float = 1.0
    #: Per element: exponent, sum, divide.
    softmax_ops: float = 3.0
    #: Per output element of an element-wise add/mul or an unknown layer.
    other_ops: float = 1.0
    #: ``grouped``: 2*K*K*C*H*W for a depthwise conv; ``dense``: as if it were a standard
    #: conv with as many outputs as inputs (the paper's appendix, C times too many).
    depthwise_ops: str = "grouped"
    #: ``per_map``: a feature map is internal iff it alone fits the internal memory (the
    #: paper's rule); ``working_set``: a layer's internal input and output must fit together,
    #: placement chosen to minimise bus traffic.
    locality: str = "working_set"
    #: Where the input image starts: ``auto`` (internal iff it fits), ``external``, ``internal``.
    input_location: str = "external"
    #: Count a softmax after the logits when the model has none (the loss applies it).
    append_softmax: bool = True

    def validate(self) -> None:
        for key, allowed in (("locality", LOCALITY), ("input_location", INPUT_LOCATION),
                             ("depthwise_ops", DEPTHWISE_OPS)):
            value = getattr(self, key)
            if value not in allowed:
                raise HairlabError(f"hardware.{key}={value!r} is unknown; choose one of {', '.join(allowed)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float",) and (not isinstance(value, (int, float)) or value < 0):
                raise HairlabError(f"hardware.{f.name} must be a number >= 0, got {value!r}")


def require_positive(options: Any, keys: tuple[str, ...], *, nullable: bool = False) -> None:
    """For a schema's ``__post_init__``: each of ``keys`` is a finite number > 0 (or None if ``nullable``)."""
    for key in keys:
        value = getattr(options, key)
        if value is None and nullable:
            continue
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{key}={value}: expected a number > 0{' or null' if nullable else ''}")


@dataclass
class TargetOptions:
    """The report options every target accepts: extend it with a target's own (docs/plugins.md).

    The factory passes them on to :class:`Target` with :func:`common_options`.
    """

    batch_size: int = opt(1, "images per inference; latencies are reported per image")
    overlap: bool = opt(False, "time = max(transfer, compute) per layer (double-buffered maps) instead of the sum")
    double_buffer: Optional[bool] = opt(None, "null = same as overlap (halves the internal memory usable for maps)")
    dtype: DType = opt("fp32", "data type of activations and weights (fp32, bf16, fp16, int8): picks the "
                               "target's rates for that type and the bytes per element")
    bytes_per_element: Optional[float] = opt(None, "bytes of one activation or weight; null = the dtype's size "
                                                   "(fp32 4, bf16/fp16 2, int8 1)")
    input_size: Optional[Union[int, list[int]]] = opt(None, "null = the model's input_shape; or H, [H, W], [C, H, W]")
    fuse_conv_bn_relu: bool = opt(False, "a conv (or dense) layer and the BN and/or ReLU after it are one row: one "
                                         "pass, the intermediate maps never written (an inference runtime's fused "
                                         "kernel)")
    fold_bn: bool = opt(False, "fold each BN that follows a conv into the conv's weights (the paper's Algorithm 2, "
                               "step 10): the BN row disappears, the conv gains a bias")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected an integer >= 1")
        require_positive(self, ("bytes_per_element",), nullable=True)


@dataclass(frozen=True)
class Reference:
    """A printed table a target should reproduce, for ``hw-report --compare-reference``.

    The table is a CSV with the report's appendix columns (``layer_name``, ``in_map_MB``,
    ... ``total_time_s``), one row per report row, numbers as printed: each computed value
    must round to the printed one.
    """

    #: Path of the CSV file (ship it as package data beside the plugin module).
    table: str
    #: The printed total latency, as printed (e.g. ``"0.177"``), or None.
    total_s: str | None = None
    #: What the table is, for the comparison's title (e.g. "the paper's appendix").
    title: str = "the reference table"
    #: Options the target is rebuilt with for the comparison (e.g. ``{"mode": "faithful"}``).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A hardware target for the analytical cost model."""

    name: str
    description: str
    #: Bytes of on-chip (internal) memory; external memory is unbounded.
    internal_memory: float
    #: Bytes per second between external and internal memory.
    bus_bandwidth: float
    #: Operations per second of the matrix unit and of the generic (host) unit.
    matrix_flops: float
    generic_flops: float
    bytes_per_element: float = 4
    batch_size: int = 1
    #: Overlap data movement with compute (time = max, not sum). Overlap needs double
    #: buffering, which halves the internal memory usable for maps.
    overlap: bool = False
    double_buffer: bool | None = None
    #: Fixed cost per layer (kernel launch, dispatch), seconds.
    layer_overhead_s: float = 0.0
    #: Layer kinds on the matrix unit; every other kind runs on the generic unit.
    matrix_kinds: tuple[str, ...] = MATRIX_KINDS
    #: Per-kind rate overrides (ops/s), e.g. a CPU's depthwise convolutions.
    kind_rates: dict[str, float] = field(default_factory=dict)
    #: Per-kind fixed cost per layer (s), replacing ``layer_overhead_s`` for that kind.
    kind_overheads: dict[str, float] = field(default_factory=dict)
    #: ``(C, H, W)`` to use instead of the model's own input shape.
    input_size: tuple[int, int, int] | None = None
    mode: str = ""
    conventions: Conventions = field(default_factory=Conventions)
    #: The data type of activations and weights (a key of :data:`DTYPE_BYTES`).
    dtype: str = "fp32"
    #: Peak ops/s per data type, ``{dtype: (matrix, generic)}``, for the types the target has
    #: figures for (``matrix_flops``/``generic_flops`` are then ``dtype``'s); empty = the two
    #: rates hold at every type (a target that states one figure).
    dtype_rates: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: Where the numbers come from (datasheet, paper, calibration), for the report.
    notes: tuple[str, ...] = ()
    #: CPU threads the numbers describe (``--measure`` runs with as many); None = any.
    threads: int | None = None
    #: A printed table this target should reproduce, for ``hw-report --compare-reference``.
    reference: Reference | None = None
    #: Names the report's rows (sets each row's ``label``); None = hairlab's generic labels
    #: (``conv1``, ``bn_relu2``...). A target reproducing a printed table names rows its way.
    label_rows: Callable[[list[Layer]], None] | None = field(default=None, compare=False)
    #: The target's own rewrites of the row list, applied in order after the general rules
    #: (e.g. rows a printed table lists that the model never executes).
    row_rules: tuple[Callable[[list[Layer]], list[Layer]], ...] = field(default=(), compare=False)
    #: A target's own time model per row: ``layer_time(layer, batch, transfer_s, compute_s)``
    #: gets the row and the engine's rate-based times and returns the ``(transfer_s, compute_s)``
    #: to use (a measured target fitted per layer kind and shape, such as a calibrated CPU).
    layer_time: Callable[[Layer, int, float, float], tuple[float, float]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise HairlabError(f"hardware.dtype={self.dtype!r} is unknown; choose one of {', '.join(DTYPE_BYTES)}")
        if self.dtype_rates and self.dtype not in self.dtype_rates:
            raise HairlabError(f"hardware.dtype={self.dtype}: target '{self.name}' has no {self.dtype} rate; "
                               f"choose one of {', '.join(self.dtype_rates)}")
        positive = ("internal_memory", "bus_bandwidth", "matrix_flops", "generic_flops", "bytes_per_element")
        for key in positive:
            value = getattr(self, key)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric or not math.isfinite(value) or value <= 0:
                raise HairlabError(f"hardware.{key} must be a positive number, got {value!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise HairlabError(f"hardware.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.layer_overhead_s < 0:
            raise HairlabError(f"hardware.layer_overhead_s must be >= 0, got {self.layer_overhead_s!r}")
        if self.input_size is not None and (len(self.input_size) != 3 or min(self.input_size) < 1):
            raise HairlabError(
                f"hardware.input_size must be [channels, height, width], got {self.input_size!r}")
        self.conventions.validate()

    @property
    def buffered(self) -> bool:
        """Whether maps are double-buffered (default: when transfer and compute overlap)."""
        return self.overlap if self.double_buffer is None else bool(self.double_buffer)

    @property
    def map_capacity(self) -> float:
        """Internal bytes usable for feature maps."""
        return self.internal_memory / 2 if self.buffered else self.internal_memory

    def rate(self, kind: str) -> float:
        """Ops/s of a layer kind at the target's data type (the engine's only rate lookup)."""
        if kind in self.kind_rates:
            return float(self.kind_rates[kind])
        return self.matrix_flops if kind in self.matrix_kinds else self.generic_flops

    def overhead(self, kind: str) -> float:
        return float(self.kind_overheads.get(kind, self.layer_overhead_s))

    def unit(self, kind: str) -> str:
        if kind in self.kind_rates:
            return f"{kind} rate"
        return "matrix" if kind in self.matrix_kinds else "generic"

    def with_options(self, **changes: Any) -> Target:
        """A copy with ``changes``; a new ``dtype`` brings its rates and element size unless given."""
        dtype = changes.get("dtype")
        if dtype is not None and dtype != self.dtype:
            if dtype in self.dtype_rates:
                matrix, generic = self.dtype_rates[dtype]
                changes.setdefault("matrix_flops", matrix)
                changes.setdefault("generic_flops", generic)
            changes.setdefault("bytes_per_element", DTYPE_BYTES.get(dtype, self.bytes_per_element))
        return replace(self, **changes)

    def assumptions(self) -> list[str]:
        """One short line per assumption in force, for the report's header (text and JSON).

        A prediction is only as good as what it assumes; saying it beside the numbers is what
        lets a reader compare two reports (or a report with a paper) without reading the code.
        """
        conv = self.conventions
        lines = []
        if self.mode:
            lines.append(f"mode: {self.mode}")
        rates = (f"matrix {format_rate(self.matrix_flops)}, generic {format_rate(self.generic_flops)}"
                 + (", own rates for " + ", ".join(self.kind_rates) if self.kind_rates else ""))
        where = (f"the target's {self.dtype} figures" if self.dtype_rates
                 else "one figure for every data type")
        size = f"{self.bytes_per_element:g} byte{'' if self.bytes_per_element == 1 else 's'}"
        lines.append(f"data type: {self.dtype}, {size} per element (activations and weights); "
                     f"rates: {rates} ({where})")
        lines.append(f"batch: {self.batch_size} image(s); parameters stream from external memory once per batch")
        fused = []
        if conv.fold_bn:
            fused.append("BN after a conv folded into its weights (the conv gains a bias; no BN row)")
        if conv.fuse_conv_bn_relu:
            fused.append(f"conv{'' if conv.fold_bn else '+BN'}+ReLU one row (one pass, intermediate maps "
                         "never written)")
        if conv.fuse_bn_relu:
            fused.append(f"{'other ' if conv.fold_bn or conv.fuse_conv_bn_relu else ''}BN+ReLU one row")
        lines.append("fusion: " + ("; ".join(fused) if fused else "none (every layer reads and writes its maps)"))
        placement = {"per_map": "per map: a map is internal iff it fits on its own",
                     "working_set": "working set: a layer's internal input and output fit together"}
        lines.append(f"locality: {placement.get(conv.locality, conv.locality)} "
                     f"({self.map_capacity / 1e6:g} MB for maps); input image {conv.input_location}")
        if self.overlap:
            lines.append("overlap: time = max(transfer, compute) per layer"
                         + (" (maps double-buffered: half the internal memory)" if self.buffered else ""))
        else:
            lines.append("overlap: none: time = transfer + compute per layer"
                         + (" (maps double-buffered)" if self.buffered else ""))
        if conv.depthwise_ops != "grouped":
            lines.append(f"depthwise convs counted as {conv.depthwise_ops}")
        if self.layer_time is not None:
            lines.append("time per row: the target's own model (fitted per layer kind and shape)")
        return lines


def format_rate(rate: float) -> str:
    """``989 T ops/s``: a rate as people read a datasheet."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if rate >= scale:
            return f"{rate / scale:.4g} {prefix} ops/s"
    return f"{rate:.4g} ops/s"

def parse_input_size(value: Any) -> tuple[int, int, int] | None:
    """``224``, ``[224, 224]``, ``[3, 224, 224]`` or None -> ``(C, H, W)`` (C=3 if omitted)."""
    if value is None:
        return None
    try:
        items = [int(value)] if isinstance(value, (int, float, str)) else [int(v) for v in value]
    except (TypeError, ValueError):
        raise HairlabError(f"hardware.input_size must be H, [H, W] or [C, H, W], got {value!r}") from None
    if len(items) == 1:
        items = [3, items[0], items[0]]
    elif len(items) == 2:
        items = [3, *items]
    if len(items) != 3 or min(items) < 1:
        raise HairlabError(f"hardware.input_size must be H, [H, W] or [C, H, W], got {value!r}")
    return (items[0], items[1], items[2])


def common_options(options: dict[str, Any], conventions: Conventions | None = None) -> dict[str, Any]:
    """Pop the :class:`TargetOptions` from ``options``: the keyword arguments :class:`Target` takes for them.

    ``conventions`` are the target's own counting rules: the fusion options are applied to them
    and returned as ``conventions``. A target that passes none cannot take fusion options.
    """
    out: dict[str, Any] = {}
    fusion: dict[str, Any] = {key: bool(options.pop(key)) for key in FUSION_OPTIONS if key in options}
    if conventions is not None:
        out["conventions"] = replace(conventions, **fusion)
    elif any(fusion.values()):
        on = ", ".join(f"hardware.{k}=true" for k, v in fusion.items() if v)
        raise HairlabError(f"{on}: this target has no counting conventions to fuse; remove the option")
    dtype = str(options.pop("dtype", "fp32"))
    out["dtype"] = dtype
    if "batch_size" in options:
        out["batch_size"] = options.pop("batch_size")
    if "overlap" in options:
        value = options.pop("overlap")
        if isinstance(value, str):
            if value not in ("sum", "max"):
                raise HairlabError(f"hardware.overlap={value!r}: use true/false (or max/sum)")
            value = value == "max"
        out["overlap"] = bool(value)
    if "double_buffer" in options:
        out["double_buffer"] = options.pop("double_buffer")
    given = options.pop("bytes_per_element", None)
    out["bytes_per_element"] = DTYPE_BYTES.get(dtype, 4) if given is None else given
    if "input_size" in options:
        out["input_size"] = parse_input_size(options.pop("input_size"))
    return out
