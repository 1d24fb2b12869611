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
from typing import TYPE_CHECKING, Any, Optional, Union

from hairlab.contract.schema import opt
from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.costmodel.layers import Layer

#: Layer kinds that run on the matrix unit unless a target says otherwise.
MATRIX_KINDS = ("conv", "dwconv", "pwconv", "dense")
LOCALITY = ("per_map", "working_set")
INPUT_LOCATION = ("auto", "external", "internal")
DEPTHWISE_OPS = ("grouped", "dense")


@dataclass(frozen=True)
class Conventions:
    """How layers are counted and where their operands live."""

    #: Merge a BN followed by a ReLU into one ``bn_relu`` row (one pass over the map).
    fuse_bn_relu: bool = True
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
    bytes_per_element: float = opt(4, "bytes of one activation or weight")
    input_size: Optional[Union[int, list[int]]] = opt(None, "null = the model's input_shape; or H, [H, W], [C, H, W]")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected an integer >= 1")
        require_positive(self, ("bytes_per_element",))


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
        lines.append(f"data: {self.bytes_per_element:g} bytes per element (activations and weights)")
        lines.append(f"batch: {self.batch_size} image(s); parameters stream from external memory once per batch")
        if conv.fuse_bn_relu:
            lines.append("fusion: BN+ReLU one row (one pass over the map)")
        else:
            lines.append("fusion: none (every layer reads and writes its maps)")
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


def common_options(options: dict[str, Any]) -> dict[str, Any]:
    """Pop the report options every target accepts (batch, overlap, bytes, input size)."""
    out: dict[str, Any] = {}
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
    if "bytes_per_element" in options:
        out["bytes_per_element"] = options.pop("bytes_per_element")
    if "input_size" in options:
        out["input_size"] = parse_input_size(options.pop("input_size"))
    return out
