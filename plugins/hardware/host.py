"""This machine's CPU as a target, from a cached torch calibration.

A CPU is modelled like the paper's accelerator, with measured numbers: "internal memory" is
the cores' private (L2) caches, the "bus" is the measured bandwidth of a copy too big for any
cache, convolutions run at
the measured convolution rate (depthwise ones at their own, much lower, measured rate), dense
layers at the measured GEMM rate, everything else at the measured element-wise rate, and every
layer pays the measured module-call overhead. Transfer and compute are summed per layer
(``overlap: false``): torch's CPU kernels do not hide streaming from L3/DRAM behind their
arithmetic, and the sum predicted this machine better than the max (docs/hw-report.md).
``threads`` defaults to 1: on a shared machine, multi-threaded timings of small layers are
dominated by waiting for a busy core.
"""

from __future__ import annotations

from typing import Any

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
    options.setdefault("overlap", False)
    common = common_options(options)
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
    return Target(
        name="host", mode=f"calibrated, {cal['threads']} thread(s)",
        description=f"{cal['cpu']} ({cal['threads']} thread(s), torch {cal['torch']})",
        internal_memory=pick("internal_memory", private),
        bus_bandwidth=pick("bus_bandwidth", cal["bandwidth"]),
        matrix_flops=pick("matrix_flops", cal["gemm_flops"]),
        generic_flops=pick("generic_flops", cal["generic_flops"]),
        layer_overhead_s=pick("layer_overhead_s", cal["layer_overhead_s"]),
        kind_rates=rates, kind_overheads=dict(cal.get("kind_overhead_s") or {}),
        conventions=HOST, threads=cal["threads"],
        notes=(f"calibration {cal.get('measured_at', '?')} (load average {_load(cal.get('loadavg'))}), "
               f"cache: {cal.get('cache_file', '-')}",),
        **common,
    )


def _load(value: Any) -> str:
    """``7.23`` (not ``7.23486328125``): the 1-minute load average as people read it."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"
