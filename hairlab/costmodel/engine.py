"""The analytical cost engine: place operands, then time data movement and compute per row.

For each row: bytes of the input map, output map and parameters; where each lives
(internal or external memory, by the target's locality rule); transfer time = bytes that
cross the bus / bus bandwidth; compute time = operations / the rate of the unit the layer
runs on; row time = transfer + compute (or the max of the two when the target overlaps
them). Parameters always stream from external memory: no target keeps weights resident.

Units: ``flops`` is the target's operation count under its conventions (2 per multiply-add,
plus the element-wise ops of BN, activations, pools, softmax and biases); ``macs`` is the
multiply-accumulates of convolutions and dense layers as the model executes them (whatever
the conventions count), the figure papers, torchinfo and thop report. Both are integers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hairlab.costmodel import conventions as conv_rules
from hairlab.costmodel.layers import Layer
from hairlab.costmodel.target import Target

MB = 1e6
INTERNAL, EXTERNAL = "internal", "external"


@dataclass
class Row:
    """One row of the report: the appendix's columns plus a few more."""

    index: int
    layer_name: str
    module: str
    kind: str
    in_map_MB: float
    out_map_MB: float
    param_MB: float
    #: Floating-point operations under the target's conventions (2 per MAC + element-wise ops).
    flops: int
    #: Multiply-accumulates of a convolution or dense layer (0 for every other kind).
    macs: int
    in_map_loc: str
    out_map_loc: str
    param_loc: str
    transfer_time_s: float
    compute_time_s: float
    total_time_s: float
    bound: str
    unit: str
    #: Operations per byte that crosses the bus (inf when nothing does).
    intensity: float
    params: int

    @property
    def ops(self) -> float:
        """The appendix's name for :attr:`flops` (its ``ops`` column), for the comparison with it."""
        return float(self.flops)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Column order of the appendix, as its printed table names them (``ops`` is our ``flops``).
APPENDIX_COLUMNS = ("layer_name", "in_map_MB", "out_map_MB", "param_MB", "ops", "in_map_loc", "out_map_loc",
                    "param_loc", "transfer_time_s", "compute_time_s", "total_time_s")
#: Column order of a report (csv, markdown, table): the appendix's with FLOPs and MACs, then the extras.
REPORT_COLUMNS = ("layer_name", "in_map_MB", "out_map_MB", "param_MB", "flops", "macs", "in_map_loc",
                  "out_map_loc", "param_loc", "transfer_time_s", "compute_time_s", "total_time_s")
EXTRA_COLUMNS = ("bound", "unit", "module", "kind")
#: Totals that are counts (integers in JSON and CSV).
COUNT_TOTALS = ("params", "flops", "macs", "rows", "memory_bound_rows", "batch_size")


@dataclass
class Report:
    """Rows, totals and the target they were computed for."""

    target: Target
    model: str
    input_shape: tuple[int, int, int]
    rows: list[Row]
    #: Times in seconds, traffic in MB; counts (``COUNT_TOTALS``) are ints.
    totals: dict[str, float] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    #: Modules behind each row (empty for rows only a convention adds), for measurement.
    sources: list[list[str]] = field(default_factory=list)
    #: Filled by ``--measure``: measured seconds per row and the measurement's facts.
    measured: list[float | None] | None = None
    measurement: dict[str, Any] | None = None

    def _row_dict(self, i: int) -> dict[str, Any]:
        data = self.rows[i].as_dict()
        if self.measured is not None:
            meas = self.measured[i]
            data["measured_s"] = meas
            data["predicted_over_measured"] = data["total_time_s"] / meas if meas else None
        return data

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "target": {"name": t.name, "mode": t.mode, "description": t.description,
                       "internal_memory": t.internal_memory, "bus_bandwidth": t.bus_bandwidth,
                       "matrix_flops": t.matrix_flops, "generic_flops": t.generic_flops,
                       "dtype": t.dtype, "bytes_per_element": t.bytes_per_element,
                       "batch_size": t.batch_size, "conventions": asdict(t.conventions),
                       "overlap": t.overlap, "double_buffer": t.buffered,
                       "layer_overhead_s": t.layer_overhead_s, "kind_rates": dict(t.kind_rates),
                       "kind_overheads": dict(t.kind_overheads),
                       "notes": list(t.notes)},
            "assumptions": assumptions(t),
            "layers": [self._row_dict(i) for i in range(len(self.rows))],
            "totals": dict(self.totals),
            "summary": list(self.summary),
            **({"measurement": self.measurement} if self.measurement else {}),
        }


def assumptions(target: Target) -> list[str]:
    """The target's assumptions in force (one line each), plus what the counts mean."""
    lines = list(target.assumptions()) if callable(getattr(target, "assumptions", None)) else []
    return [*lines, "units: FLOPs = the target's operation count (2 per multiply-add + element-wise ops); "
                    "MACs = multiply-accumulates of conv and dense layers"]


def _place_per_map(sizes: list[float], cap: float, first: str) -> list[str]:
    """The paper's rule: each map is internal iff it fits on its own."""
    locs = [INTERNAL if s <= cap else EXTERNAL for s in sizes]
    if first != "auto" and sizes:
        locs[0] = INTERNAL if first == "internal" and sizes[0] <= cap else EXTERNAL
    return locs


def _place_working_set(ins: list[float], outs: list[float], cap: float, first: str) -> list[str]:
    """Locations of maps m_0..m_n (m_i = input of row i) minimising bus bytes.

    Row i holds its input and output in internal memory at the same time, so
    ``in_i * internal(m_i) + out_i * internal(m_i+1) <= cap``. An external map costs its
    write by the producer plus its read by the consumer. Dynamic programming over the chain.
    """
    n = len(ins)
    INF = float("inf")

    def ext_cost(i: int) -> float:
        return (outs[i - 1] if i > 0 else 0.0) + (ins[i] if i < n else 0.0)

    def allowed(i: int, loc: str) -> bool:
        size = max(outs[i - 1] if i > 0 else 0.0, ins[i] if i < n else 0.0)
        if i == 0 and first != "auto":
            return loc == first and (loc == EXTERNAL or size <= cap)
        return loc == EXTERNAL or size <= cap

    states = (INTERNAL, EXTERNAL)
    cost = [{s: (ext_cost(0) if s == EXTERNAL else 0.0) if allowed(0, s) else INF for s in states}]
    back: list[dict[str, str]] = [{}]
    for i in range(1, n + 1):
        row, ptr = {}, {}
        for s in states:
            best, arg = INF, EXTERNAL
            if allowed(i, s):
                for p in states:
                    held = (ins[i - 1] if p == INTERNAL else 0.0) + (outs[i - 1] if s == INTERNAL else 0.0)
                    fits = held <= cap
                    if fits and cost[i - 1][p] < best:
                        best, arg = cost[i - 1][p], p
            row[s] = best + (ext_cost(i) if s == EXTERNAL else 0.0)
            ptr[s] = arg
        cost.append(row)
        back.append(ptr)
    loc = min(states, key=lambda s: cost[n][s])
    locs = [loc]
    for i in range(n, 0, -1):
        loc = back[i][loc]
        locs.append(loc)
    return locs[::-1]


def estimate(layers: list[Layer], target: Target, *, model: str = "model",
             input_shape: tuple[int, int, int] = (0, 0, 0)) -> Report:
    """Cost every row of ``layers`` on ``target``."""
    conv = target.conventions
    rows_in = conv_rules.apply(layers, conv, target.label_rows, target.row_rules)
    b, bpe = target.batch_size, target.bytes_per_element
    ins = [r.in_elems * bpe * b for r in rows_in]
    outs = [r.out_elems * bpe * b for r in rows_in]
    cap = target.map_capacity
    if conv.locality == "per_map":
        in_locs = _place_per_map(ins, cap, conv.input_location)
        out_locs = _place_per_map(outs, cap, "auto")
    else:
        maps = _place_working_set(ins, outs, cap, conv.input_location)
        in_locs, out_locs = maps[:-1], maps[1:]
    rows: list[Row] = []
    for i, layer in enumerate(rows_in):
        param_bytes = layer.params * bpe
        flops = round(conv_rules.count_ops(layer, conv) * b)
        macs = int(layer.macs) * b
        moved = (ins[i] if in_locs[i] == EXTERNAL else 0.0) + (outs[i] if out_locs[i] == EXTERNAL else 0.0)
        moved += param_bytes
        transfer = moved / target.bus_bandwidth
        compute = flops / target.rate(layer.kind) + target.overhead(layer.kind)
        if target.layer_time is not None:
            transfer, compute = target.layer_time(layer, b, transfer, compute)
        total = max(transfer, compute) if target.overlap else transfer + compute
        rows.append(Row(
            index=i + 1, layer_name=layer.label, module=layer.name, kind=layer.kind,
            in_map_MB=ins[i] / MB, out_map_MB=outs[i] / MB, param_MB=param_bytes / MB,
            flops=flops, macs=macs,
            in_map_loc=in_locs[i], out_map_loc=out_locs[i], param_loc=EXTERNAL,
            transfer_time_s=transfer, compute_time_s=compute, total_time_s=total,
            bound="memory" if transfer > compute else "compute", unit=target.unit(layer.kind),
            intensity=flops / moved if moved else float("inf"), params=layer.params,
        ))
    report = Report(target, model, input_shape, rows)
    report.sources = [[] if r.synthetic else list(r.attrs.get("sources", [r.name])) for r in rows_in]
    report.totals = _totals(rows, target, layers)
    report.summary = summarize(report)
    return report


def _totals(rows: list[Row], target: Target, layers: list[Layer]) -> dict[str, float]:
    latency = sum(r.total_time_s for r in rows)
    transfer = sum(r.transfer_time_s for r in rows)
    compute = sum(r.compute_time_s for r in rows)
    # Bytes that cross the bus, from the placements (not transfer time x bandwidth: a target's own
    # time model, such as the fitted host, times transfers its own way).
    moved = MB * sum((r.in_map_MB if r.in_map_loc == EXTERNAL else 0.0)
                     + (r.out_map_MB if r.out_map_loc == EXTERNAL else 0.0) + r.param_MB for r in rows)
    return {
        "latency_s": latency,
        "latency_per_image_s": latency / target.batch_size,
        "images_per_s": target.batch_size / latency if latency else float("inf"),
        "transfer_s": transfer,
        "compute_s": compute,
        # Parameters of the model (each layer once, extra listed rows not double counted).
        "params": sum(layer.params for layer in layers),
        "flops": sum(r.flops for r in rows),
        "macs": sum(r.macs for r in rows),
        "bus_MB": moved / MB,
        "rows": len(rows),
        "memory_bound_rows": sum(r.bound == "memory" for r in rows),
        "batch_size": int(target.batch_size),
    }


def slowest_rows(rows: list[Row], n: int) -> list[Row]:
    """The ``n`` rows with the longest predicted time, slowest first (the summary and the roofline's labels)."""
    return sorted(rows, key=lambda r: -r.total_time_s)[:n]


def row_tag(row: Row) -> str:
    """``#3 max_pool``: how the summary and the roofline name a row (its index in the table, its label)."""
    return f"#{row.index} {row.layer_name}"


def summarize(report: Report) -> list[str]:
    """A few sentences on where the time goes."""
    rows, tot = report.rows, report.totals
    latency = tot["latency_s"] or 1.0
    lines = [
        f"total {tot['latency_s'] * 1e3:.3f} ms per batch of {int(tot['batch_size'])} "
        f"({tot['latency_per_image_s'] * 1e3:.3f} ms per image); transfer {tot['transfer_s'] * 1e3:.3f} ms "
        f"({100 * tot['transfer_s'] / latency:.0f}%), compute {tot['compute_s'] * 1e3:.3f} ms "
        f"({100 * tot['compute_s'] / latency:.0f}%)"
        + (" (overlapped: total is the per-layer max)" if report.target.overlap else ""),
    ]
    by_kind: dict[str, float] = {}
    for r in rows:
        by_kind[r.kind] = by_kind.get(r.kind, 0.0) + r.total_time_s
    kinds = sorted(by_kind.items(), key=lambda kv: -kv[1])[:4]
    lines.append("by layer type: " + ", ".join(f"{k} {100 * v / latency:.0f}%" for k, v in kinds))
    lines.append("slowest rows: " + ", ".join(
        f"{row_tag(r)} {r.total_time_s * 1e3:.3f} ms ({r.bound}-bound)" for r in slowest_rows(rows, 3)))
    mem = sum(r.bound == "memory" for r in rows)
    lines.append(f"{mem} of {len(rows)} rows are memory-bound")
    return lines
