"""The host CPU's time model: per layer kind, time as a fitted sum of a few work terms.

Why this form. A CPU kernel's time is a fixed cost (dispatch, kernel selection, thread
wake-up) plus work that scales with a handful of sizes, and which size dominates depends on the
shape regime: a 3-channel stem conv is bound by its outputs (its reduction is only 27 long),
a 1x1 conv with few output channels by its im2col-like reads, a big GEMM by its
multiply-accumulates, a batch-1 dense layer by its weights, an element-wise layer by its
elements (more per element once its maps spill out of L2 or L3). So each kind gets
``time = t0 + sum_i c_i * feature_i`` over the features in :data:`FEATURES`, all non-negative,
fitted by least squares on *relative* error (rows weighted by 1/time, so a 20 us layer counts
as much as a 20 ms one) to timings of a sweep of shapes, as nn-Meter samples kernels
(channels, spatial size, kernel, stride, batch 1 and 8). Negative coefficients are dropped
one at a time and the rest refitted (a small active-set NNLS): a negative cost per FLOP would
predict nonsense outside the sweep. Linear in its coefficients, the model extrapolates sanely
(unlike a tree or nearest-neighbour fit) and every coefficient reads as a cost: seconds per MAC
is 1 / the kernel's peak, seconds per element 1 / its bandwidth.

The same features split each prediction into compute (``t0`` and arithmetic terms) and
transfer (terms counting bytes), so a report's ``bound`` column still means something.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hairlab.costmodel.layers import Layer

#: Feature names per kind (``one`` is the fixed cost). Terms in :data:`TRANSFER` count data moved.
FEATURES: dict[str, tuple[str, ...]] = {
    "conv": ("one", "macs", "out", "im2col", "in", "params", "fresh"),
    "pwconv": ("one", "macs", "out", "in", "params", "fresh"),
    "dwconv": ("one", "macs", "out", "in", "fresh"),
    "dense": ("one", "macs", "params", "out", "cold_l2", "cold_l3"),
    "bn": ("one", "elems", "spill_l2", "spill_l3", "cold_l2", "cold_l3", "fresh"),
    "relu": ("one", "elems", "spill_l2", "spill_l3", "cold_l2", "cold_l3"),
    "add": ("one", "elems", "spill_l2", "spill_l3", "cold_l2", "cold_l3"),
    "maxpool": ("one", "in", "out", "cold_l2", "cold_l3", "fresh"),
    "avgpool": ("one", "in", "out", "cold_l2", "cold_l3"),
    "gap": ("one", "in", "out", "cold_l2", "cold_l3"),
    "softmax": ("one", "out", "cold_l2", "cold_l3"),
}
#: Terms counting data moved (the rest is compute: the fixed cost and arithmetic). ``cold_*``: the
#: share of L2 / L3 the previous layer's data filled (its maps and weights), which a small layer
#: pays for in misses on everything else it touches (interpreter, dispatcher, its own weights):
#: after a 150 MB dense layer even a 4096-element ReLU takes 50 us instead of 5. Only for layers
#: whose own data fit in L2 (and not for convs): for bigger ones the refill is lost in their own
#: streaming, and a fit would turn the term into a proxy for size.
#: ``fresh``: output elements of a layer whose output is at least :data:`FRESH_BYTES`; such
#: buffers are often newly mapped by the allocator and page-faulted on first write (at batch 8 a
#: HairNet-ImageNet BN then takes 4x its twin of the same shape); the fit charges the average.
TRANSFER = frozenset({"in", "out", "params", "elems", "spill_l2", "spill_l3", "im2col", "cold_l2", "cold_l3",
                      "fresh"})
FRESH_BYTES = 8 * 2**20
#: Kinds predicted through another's model (``other``: an unknown layer, one generic op per output).
ALIASES = {"other": "add"}

Dims = Mapping[str, float]
#: Trimmed refits: rounds, and the share of samples (best fitted first) each keeps. Off by
#: default: interruptions only ever add time, so dropping the worst-fitted samples dropped the slow
#: ones and biased the fit low (one-thread cases 0.63-1.06 against 0.74-1.16 untrimmed, load ~2).
TRIM_ROUNDS, TRIM_KEEP = 0, 0.8


def dims(kind: str, batch: int, in_shape: Sequence[int], out_shape: Sequence[int], *, params: int = 0,
         kernel: Sequence[int] = (), in_channels: int = 0, out_channels: int = 0, groups: int = 1,
         in_elems: int | None = None, prev_bytes: float = 0.0) -> dict[str, float]:
    """The sizes the features are made of, for a layer run on ``batch`` images (``*_shape`` per image)."""
    n_in = float(in_elems if in_elems is not None else math.prod(in_shape))
    n_out = float(math.prod(out_shape)) if out_shape else 1.0
    k = float(math.prod(kernel)) if kernel else 1.0
    cin = float(in_channels or (in_shape[0] if in_shape else 1))
    cout = float(out_channels or (out_shape[0] if out_shape else 1))
    g = float(groups or 1)
    out_spatial = n_out / cout if cout else n_out
    if kind in ("conv", "pwconv", "dwconv"):
        macs = n_out * (cin / g) * k
    elif kind == "dense":
        macs = n_out * cin  # cin: the input features
    else:
        macs = 0.0
    return {"batch": float(batch), "in": n_in * batch, "out": n_out * batch, "macs": macs * batch,
            "params": float(params), "im2col": out_spatial * cin * k * batch,
            "elems": max(n_in, n_out) * batch, "kernel": k, "prev_bytes": float(prev_bytes)}


def layer_dims(layer: Layer, batch: int) -> dict[str, float]:
    """:func:`dims` of an extracted layer (its shapes, geometry and parameter count)."""
    a = layer.attrs
    cin = int(a.get("in_channels") or 0)
    if layer.kind == "dense":
        cin = int(layer.macs // max(1, layer.out_elems)) if layer.macs else int(layer.in_elems)
    prev_elems, prev_params = a.get("prev_footprint", (0, 0))
    return dims(layer.kind, batch, layer.in_shape, layer.out_shape, params=layer.params,
                kernel=tuple(a.get("kernel") or ()), in_channels=cin, out_channels=int(a.get("out_channels") or 0),
                groups=int(a.get("groups") or 1), in_elems=layer.in_elems,
                prev_bytes=4.0 * (prev_elems * batch + prev_params))


def mark_previous(layers: list[Layer]) -> list[Layer]:
    """Record on each row what the row before it touched (``attrs["prev_footprint"]``: map elements per
    image, parameters); the first row gets the last one's (the previous pass ran it last).

    A ``Target.row_rules`` entry, so the per-row model sees its neighbour.
    """
    for i, layer in enumerate(layers):
        prev = layers[i - 1] if layers else layer
        layer.attrs["prev_footprint"] = (int(prev.in_elems + prev.out_elems), int(prev.params))
    return layers


def mark_model_weights(layers: list[Layer]) -> list[Layer]:
    """Record on each row the whole model's parameter count (``attrs["model_params"]``): whether a
    layer's weights can stay in the last-level cache from one pass to the next depends on all of them.

    A ``Target.row_rules`` entry, like :func:`mark_previous`.
    """
    total = sum(int(layer.params) for layer in layers)
    for layer in layers:
        layer.attrs["model_params"] = total
    return layers


def cold_weights_s(layer: Layer, caches: Mapping[str, float], dram_bandwidth: float | None) -> float:
    """The least time a layer takes to stream its weights from DRAM when they cannot be cached.

    When the model's weights together exceed the last-level cache, each layer's weights were evicted
    since the previous pass touched them (least recently used), so they come from DRAM at the probed
    copy bandwidth, however fast the same layer runs in a small calibration chain whose weights stay
    cached (AlexNet's 151 MB fc6 at batch 1: 11.8 ms at 12.8 GB/s, measured 11.8 in the model; the fit
    on hot chains said 6.7). Measured by the bandwidth probe, not fitted.
    """
    if not dram_bandwidth or not layer.params:
        return 0.0
    llc = float(max(caches.values())) if caches else 32.0 * 2**20
    if 4.0 * float(layer.attrs.get("model_params", layer.params)) <= llc:
        return 0.0
    return 4.0 * float(layer.params) / float(dram_bandwidth)


def feature_vector(kind: str, d: Dims, caches: Mapping[str, float],
                   names: Sequence[str] | None = None) -> list[float]:
    """The values of ``names`` (default ``FEATURES[kind]``) for sizes ``d`` (fp32: 4 bytes per element)."""
    l2, l3 = float(caches.get("L2", 2**20)), float(caches.get("L3", 32 * 2**20))
    moved = 4.0 * (d["in"] + d["out"])
    prev = float(d.get("prev_bytes", 0.0))
    values = {**d, "one": 1.0, "spill_l2": max(0.0, moved - l2) / 4.0, "spill_l3": max(0.0, moved - l3) / 4.0,
              "cold_l2": min(1.0, prev / l2) if moved < l2 else 0.0,
              "cold_l3": min(1.0, prev / l3) if moved < l2 else 0.0,
              "fresh": d["out"] if 4.0 * d["out"] >= FRESH_BYTES else 0.0}
    return [float(values[name]) for name in (names or FEATURES[kind])]


def nnls_relative(rows: Sequence[Sequence[float]], times: Sequence[float]) -> list[float]:
    """Non-negative coefficients minimising the sum of squared *relative* errors.

    Weighted least squares (each row divided by its time), then the most negative coefficient
    is fixed at zero and the rest refitted, until none is negative.
    """
    import numpy as np

    x = np.asarray(rows, dtype=float)
    t = np.asarray(times, dtype=float)
    a = x / t[:, None]
    b = np.ones(len(t))
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        # Scale columns to unit norm: features span 1 to 1e10, which lstsq handles badly unscaled.
        cols = a[:, active]
        scale = np.linalg.norm(cols, axis=0)
        scale[scale == 0] = 1.0
        sol = np.linalg.lstsq(cols / scale, b, rcond=None)[0] / scale
        if (sol >= 0).all():
            coef[:] = 0.0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return [float(c) for c in coef]


def fit(samples: Sequence[Mapping[str, Any]], caches: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Per-kind coefficients from calibration samples (``{"kind", "dims", "time_s"}`` each).

    Returns ``{kind: {"features": [...], "coef": [...], "n": samples, "median_rel_err": ...}}``:
    the median relative error of the fit on its own samples says how well the form holds.
    """
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        if s["kind"] in FEATURES and s["time_s"] > 0:
            by_kind.setdefault(s["kind"], []).append(s)
    out: dict[str, dict[str, Any]] = {}
    for kind, items in by_kind.items():
        rows = [feature_vector(kind, s["dims"], caches) for s in items]
        times = [float(s["time_s"]) for s in items]
        keep = list(range(len(items)))
        for _ in range(1 + TRIM_ROUNDS):
            coef = nnls_relative([rows[i] for i in keep], [times[i] for i in keep])
            errs = [abs(sum(c * v for c, v in zip(coef, r, strict=True)) / t - 1) for r, t in
                    zip(rows, times, strict=True)]
            # Trimmed refit: a timing the OS interrupted (wall clock, a busy machine) is an outlier
            # that a least-squares fit would chase; drop the worst fifth (never the last few).
            cut = max(sorted(errs)[int(TRIM_KEEP * (len(errs) - 1))], 0.1)
            kept = [i for i, e in enumerate(errs) if e <= cut]
            if len(kept) < len(FEATURES[kind]) + 2 or kept == keep:
                break
            keep = kept
        ordered = sorted(errs)
        out[kind] = {"features": list(FEATURES[kind]), "coef": coef, "n": len(items), "n_fitted": len(keep),
                     "median_rel_err": ordered[len(ordered) // 2]}
    return out


def fresh_map_s(kind: str, d: Dims, fresh: tuple[float, float] | None) -> float:
    """Page faults of an output buffer the allocator maps fresh: ``fresh = (bytes from, s per byte)``.

    glibc's malloc serves blocks of 32 MiB and more with their own ``mmap`` whatever its dynamic
    threshold, so every such output is new memory, faulted page by page on its first write (0.6 ns
    a byte here: a 51 MB map at batch 8 costs 32 ms more than its kernel). Measured by a probe, not
    fitted: the calibration's chains stay below that size. ReLUs are taken to run in place.
    """
    if fresh is None or kind == "relu":
        return 0.0
    out_bytes = 4.0 * d["out"]
    return fresh[1] * out_bytes if out_bytes >= fresh[0] else 0.0


def predict_parts(model: Mapping[str, Mapping[str, Any]], kind: str, d: Dims,
                  caches: Mapping[str, float], fresh: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """``(transfer_s, compute_s)`` of one layer from the fitted ``model``, or None for a kind it lacks."""
    if kind == "bn_relu":
        parts = [predict_parts(model, k, d, caches, fresh if k == "bn" else None) for k in ("bn", "relu")]
        if None in parts:
            return None
        return (sum(p[0] for p in parts if p), sum(p[1] for p in parts if p))
    kind = ALIASES.get(kind, kind)
    entry = model.get(kind)
    if entry is None or kind not in FEATURES:
        return None
    transfer, compute = fresh_map_s(kind, d, fresh), 0.0
    names = entry["features"]  # as fitted (a cache written by an older hairlab may differ from FEATURES)
    for name, c, v in zip(names, entry["coef"], feature_vector(kind, d, caches, names), strict=True):
        if name in TRANSFER:
            transfer += c * v
        else:
            compute += c * v
    return transfer, compute


class HostTime:
    """``Target.layer_time`` for a calibrated CPU: the fitted model per row, rates where it has none.

    A small class rather than a closure, so a target holding it still pickles.
    """

    def __init__(self, model: Mapping[str, Mapping[str, Any]], caches: Mapping[str, float],
                 fresh: tuple[float, float] | None = None, dram_bandwidth: float | None = None) -> None:
        self.model = {k: dict(v) for k, v in model.items()}
        self.caches = dict(caches)
        self.fresh = fresh
        self.dram_bandwidth = dram_bandwidth

    def __call__(self, layer: Layer, batch: int, transfer_s: float, compute_s: float) -> tuple[float, float]:
        parts = predict_parts(self.model, layer.kind, layer_dims(layer, batch), self.caches, self.fresh)
        transfer, compute = parts if parts is not None else (transfer_s, compute_s)
        # Weights that cannot stay cached between passes: at least their DRAM streaming time.
        floor = cold_weights_s(layer, self.caches, self.dram_bandwidth)
        if floor > transfer + compute:
            transfer = floor - compute
        return transfer, compute
