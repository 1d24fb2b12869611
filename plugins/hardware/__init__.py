"""Built-in hardware targets for ``hairlab hw-report`` and the ``hw/<target>/*`` metrics.

``paper2012``: the HairNet paper's 2012 accelerator, ``mode: corrected`` (the default: any
model counted right) or ``faithful`` (reproduces the appendix, errors included). ``host``: this
machine's CPU, calibrated with torch (cached).
``h100_sxm``: a present-day GPU described from its datasheet.

The schemas below are each target's only definition of its options (the H100's datasheet
figures live in :class:`H100SXMOptions` and nowhere else); hairlab stores them in Hydra's
ConfigStore as ``hardware/<name>``, so there is no YAML. Factories import their modules lazily,
so loading the plugin stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from hairlab import hookimpl
from hairlab.contract.schema import opt
from hairlab.costmodel.target import TargetOptions, require_positive
from hairlab.registry import Entry


@dataclass
class Paper2012Options(TargetOptions):
    """The paper's accelerator (Section 5): 1 GB/s bus to 1 MB internal memory, 1 TFLOPS matrix compute."""

    mode: Literal["faithful", "corrected"] = opt(
        "corrected", "corrected (default): the hardware counted correctly for any model, with the rates the text "
                     "states; faithful: the appendix's own counting rules (its 66 rows, 0.177 s), only to "
                     "reproduce the appendix")
    internal_memory: float = opt(1.0e6, "bytes of internal memory")
    bus_bandwidth: float = opt(1.0e9, "bytes/s between external and internal memory")
    matrix_flops: float = opt(1.0e12, "ops/s of the matrix unit")
    generic_flops: Optional[float] = opt(None, "ops/s of the generic unit; null = 1e9 (what the appendix used) if "
                                               "faithful, 1e10 (stated) if corrected")
    layer_overhead_s: float = opt(0.0, "fixed cost per layer, seconds")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("internal_memory", "bus_bandwidth", "matrix_flops"))
        require_positive(self, ("generic_flops",), nullable=True)
        if self.layer_overhead_s < 0:
            raise ValueError(f"layer_overhead_s={self.layer_overhead_s}: expected a number >= 0")


@dataclass
class HostOptions(TargetOptions):
    """This machine's CPU from a cached torch calibration; any rate left null comes from it (docs/hw-report.md)."""

    threads: int = opt(1, "CPU threads the target describes (and --measure uses)")
    calibration: Literal["auto", "refresh"] = opt("auto", "auto: use the cache, measure if missing; refresh: "
                                                          "measure again")
    internal_memory: Optional[float] = opt(None, "bytes; null = the cores' private L2 caches")
    bus_bandwidth: Optional[float] = opt(None, "bytes/s; null = measured copy bandwidth (beyond all caches)")
    matrix_flops: Optional[float] = opt(None, "dense layers (GEMM), ops/s; null = measured")
    conv_flops: Optional[float] = opt(None, "3x3 (and other) standard convolutions, ops/s; null = measured")
    pwconv_flops: Optional[float] = opt(None, "1x1 convolutions, ops/s; null = measured")
    dwconv_flops: Optional[float] = opt(None, "depthwise convolutions, ops/s; null = measured")
    generic_flops: Optional[float] = opt(None, "element-wise work without its own rate (add, softmax, GAP), "
                                               "ops/s; null = measured")
    layer_overhead_s: Optional[float] = opt(None, "per-layer dispatch cost, seconds; null = measured")
    overlap: bool = opt(False, "sum transfer and compute per layer (false): on a CPU the sum predicts torch's "
                               "kernels better than the max")
    double_buffer: Optional[bool] = opt(False, "caches are not double-buffered scratchpads")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads < 1:
            raise ValueError(f"threads={self.threads}: expected an integer >= 1")
        require_positive(self, ("internal_memory", "bus_bandwidth", "matrix_flops", "conv_flops", "pwconv_flops",
                         "dwconv_flops", "generic_flops"), nullable=True)
        if self.layer_overhead_s is not None and self.layer_overhead_s < 0:
            raise ValueError(f"layer_overhead_s={self.layer_overhead_s}: expected a number >= 0 or null")


@dataclass
class H100SXMOptions(TargetOptions):
    """NVIDIA H100 SXM5 80GB, datasheet peaks: 3.35 TB/s HBM3, 50 MB L2, 989 TFLOPS BF16 dense, 67 TFLOPS FP32.

    HBM is the external memory, L2 the internal one, tensor cores the matrix unit (so 2 bytes per
    element), CUDA cores the generic unit; kernels overlap loads with arithmetic, and each layer
    pays a kernel launch (about 4 us with CUDA graphs off).
    """

    internal_memory: float = opt(50.0e6, "L2, bytes")
    bus_bandwidth: float = opt(3.35e12, "HBM3, bytes/s")
    matrix_flops: float = opt(989.0e12, "tensor cores, dense BF16/FP16, ops/s")
    generic_flops: float = opt(67.0e12, "CUDA cores, FP32, ops/s")
    layer_overhead_s: float = opt(4.0e-6, "one kernel launch per layer, seconds")
    overlap: bool = opt(True, "kernels overlap loads with arithmetic: time = max(transfer, compute)")
    bytes_per_element: float = opt(2, "BF16/FP16 on the tensor cores")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("internal_memory", "bus_bandwidth", "matrix_flops", "generic_flops"))
        if self.layer_overhead_s < 0:
            raise ValueError(f"layer_overhead_s={self.layer_overhead_s}: expected a number >= 0")


def _paper2012(**options: Any) -> Any:
    from hairlab_plugins.hardware.paper2012 import paper2012

    return paper2012(**options)


def _h100_sxm(**options: Any) -> Any:
    from hairlab_plugins.hardware.datasheet import datasheet

    return datasheet("h100_sxm", H100SXMOptions.__doc__.splitlines()[0], **options)  # type: ignore[union-attr]


def _host(**options: Any) -> Any:
    from hairlab_plugins.hardware.host import host

    return host(**options)


@hookimpl
def hairlab_hardware() -> list[Entry]:
    return [
        Entry("paper2012", _paper2012,
              "The paper's 2012 accelerator: 1 GB/s bus, 1 MB internal, 1 TFLOPS matrix, 10 GFLOPS host.\n"
              "mode=corrected (default) counts any model right; mode=faithful reproduces the appendix (0.177 s).",
              Paper2012Options),
        Entry("host", _host,
              "This machine's CPU: GEMM, element-wise and memory rates measured with torch, cached.\n"
              "Pair with `hw-report --measure` to see prediction error per layer.", HostOptions),
        Entry("h100_sxm", _h100_sxm,
              "NVIDIA H100 SXM5 from its datasheet: 3.35 TB/s HBM3, 50 MB L2, 989 TFLOPS BF16, "
              "67 TFLOPS FP32.\n"
              "Peak figures, not measured: a lower bound on real latency.", H100SXMOptions),
    ]
