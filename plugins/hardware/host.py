"""This machine's CPU as a target, from a cached torch calibration.

Each row's time comes from the calibration's fitted per-kind model
(:mod:`hairlab.costmodel.hostfit`, through ``Target.layer_time``): a fixed cost plus terms in
the layer's MACs, outputs, inputs, weights and cache spill, fitted to layers of a sweep of
shapes timed in place. The rate-based fields stay filled with measured figures, for the
roofline and summaries and for ``time_model: rates``: "internal memory" is the cores' private
(L2) caches, the "bus" the copy bandwidth of a written buffer beyond the last-level cache, each
kind's rate its sustained ops/s over the sweep, each kind's fixed cost the fit's intercept.
Transfer and compute are summed per layer (``overlap: false``): torch's CPU kernels do not hide
streaming behind arithmetic. ``threads`` defaults to 1 (a separate calibration per count).
"""

from __future__ import annotations

from typing import Any

from hairlab.costmodel.hostfit import HostTime, mark_model_weights, mark_previous
from hairlab.costmodel.target import Conventions, Target, common_options
from hairlab.errors import HairlabError

HOST = Conventions(
    fuse_bn_relu=False, bn_ops=2.0, relu_ops=1.0, pool_ops=1.0, softmax_ops=3.0, depthwise_ops="grouped",
    locality="working_set", input_location="external", append_softmax=False,
)

def host(**options: Any) -> Target:
    """Build the host target; any rate left null comes from the calibration."""
    from hairlab.costmodel.calibrate import calibration

    options = dict(options)  # checked by the contract against HostOptions
    threads = int(options.pop("threads", 1))
    mode = str(options.pop("calibration", "auto"))
    time_model = str(options.pop("time_model", "fitted"))
    options.setdefault("overlap", False)
    common = common_options(options, HOST)  # (HOST + the fusion options: the target's conventions)
    rate_keys = ("internal_memory", "bus_bandwidth", "matrix_flops", "conv_flops", "pwconv_flops",
                 "dwconv_flops", "generic_flops", "layer_overhead_s")
    given = {k: options.pop(k, None) for k in rate_keys}
    cal = calibration(threads, refresh=mode == "refresh")
    caches = cal.get("caches") or {}
    # A layer runs at compute speed while its maps sit in the core's private cache (L2);
    # bigger maps stream from L3/DRAM at the measured bandwidth.
    private = caches.get("L2", max(caches.values()) if caches else 2**20) * int(cal["threads"])

    def pick(key: str, measured: float) -> float:
        value = given.get(key)
        try:
            return float(measured if value is None else value)
        except (TypeError, ValueError):
            raise HairlabError(f"hardware.{key} must be a number, got {value!r}") from None

    rates = {
        "conv": pick("conv_flops", cal["conv_flops"]),
        "pwconv": pick("pwconv_flops", cal["pwconv_flops"]),
        "dwconv": pick("dwconv_flops", cal["dwconv_flops"]),
        "bn": cal["bn_flops"], "relu": cal["relu_flops"], "maxpool": cal["pool_flops"],
        "avgpool": cal["pool_flops"],
    }
    # A rate given on the command line means the rate model: the fit would ignore it.
    overridden = any(v is not None for v in given.values())
    fitted = cal.get("fit") if time_model == "fitted" and not overridden else None
    fresh = (float(cal["fresh_map_bytes"]), float(cal["page_fault_s_per_byte"])) if "fresh_map_bytes" in cal else None
    dram = (cal.get("bandwidths") or {}).get("DRAM")
    layer_time = HostTime(fitted, caches, fresh, float(dram) if dram else None) if fitted else None
    rates.update({k: float(v) for k, v in (cal.get("rates") or {}).items()
                  if k not in rates and k not in ("dense",)})
    return Target(
        name="host", mode=f"calibrated, {cal['threads']} thread(s), {'fitted per kind' if fitted else 'rates'}",
        description=f"{cal['cpu']} ({cal['threads']} thread(s), torch {cal['torch']})",
        internal_memory=pick("internal_memory", private),
        bus_bandwidth=pick("bus_bandwidth", cal["bandwidth"]),
        matrix_flops=pick("matrix_flops", cal["gemm_flops"]),
        generic_flops=pick("generic_flops", cal["generic_flops"]),
        layer_overhead_s=pick("layer_overhead_s", cal["layer_overhead_s"]),
        kind_rates=rates, kind_overheads=dict(cal.get("kind_overhead_s") or {}),
        threads=cal["threads"], layer_time=layer_time, row_rules=(mark_previous, mark_model_weights) if fitted else (),
        # The calibration measures fp32 kernels only: another hardware.dtype is a one-line error.
        dtype_rates={"fp32": (pick("matrix_flops", cal["gemm_flops"]), pick("generic_flops", cal["generic_flops"]))},
        notes=(f"calibration {cal.get('measured_at', '?')} (load average {_load(cal.get('loadavg'))}), "
               f"cache: {cal.get('cache_file', '-')}",),
        **common,
    )


def _load(value: Any) -> str:
    """``7.23`` (not ``7.23486328125``): the 1-minute load average as people read it."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"
