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
from typing import Any, ClassVar, Literal, Optional

from hairlab import hookimpl
from hairlab.contract.schema import opt
from hairlab.costmodel.target import DType, TargetOptions, require_positive
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
    time_model: Literal["fitted", "rates"] = opt(
        "fitted", "fitted: each row from the calibration's per-kind model fitted on a sweep of shapes; rates: ops "
                  "over one rate per kind plus a fixed cost (also used when any rate below is given)")
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
        if self.dtype != "fp32":  # checked here, before a calibration could run
            raise ValueError(f"dtype={self.dtype}: the host calibration measures fp32 kernels only; use fp32")
        require_positive(self, ("internal_memory", "bus_bandwidth", "matrix_flops", "conv_flops", "pwconv_flops",
                         "dwconv_flops", "generic_flops"), nullable=True)
        if self.layer_overhead_s is not None and self.layer_overhead_s < 0:
            raise ValueError(f"layer_overhead_s={self.layer_overhead_s}: expected a number >= 0 or null")


@dataclass
class H100SXMOptions(TargetOptions):
    """NVIDIA H100 SXM5 80GB, datasheet peaks: 3.35 TB/s HBM3, 50 MB L2, 989 TFLOPS BF16 dense, 67 TFLOPS FP32.

    HBM is the external memory, L2 the internal one, tensor cores the matrix unit, CUDA cores the
    generic unit; kernels overlap loads with arithmetic, and each layer pays a kernel launch
    (about 4 us with CUDA graphs off). Rates per data type: :attr:`DATASHEET_RATES`.
    """

    #: NVIDIA H100 Tensor Core GPU datasheet, SXM column, ops/s per data type as
    #: ``(matrix unit, generic unit)``. The datasheet prints tensor-core figures with 2:4
    #: structured sparsity ("BF16 1,979 TFLOPS*, * with sparsity"); these are the dense ones,
    #: half of those: BF16 and FP16 989 TFLOPS, INT8 1,979 TOPS. FP32 runs on the CUDA cores
    #: (67 TFLOPS; TF32 on the tensor cores, 494 TFLOPS dense, is not assumed: give
    #: ``matrix_flops=494e12`` for it). Element-wise work runs on the CUDA cores at the FP32
    #: figure for every type: the datasheet gives no other, and such kernels compute in FP32.
    DATASHEET_RATES: ClassVar[dict[str, tuple[float, float]]] = {
        "fp32": (67.0e12, 67.0e12),
        "bf16": (989.0e12, 67.0e12),
        "fp16": (989.0e12, 67.0e12),
        "int8": (1979.0e12, 67.0e12),
    }

    internal_memory: float = opt(50.0e6, "L2, bytes")
    bus_bandwidth: float = opt(3.35e12, "HBM3, bytes/s")
    dtype: DType = opt("bf16", "fp32 | bf16 | fp16 | int8: the datasheet's dense rate for that type (bf16 "
                               "and fp16 989e12, int8 1979e12 on the tensor cores; fp32 67e12 on the CUDA "
                               "cores) and its element size")
    matrix_flops: Optional[float] = opt(None, "tensor cores, ops/s; null = the datasheet's dense figure for dtype")
    generic_flops: Optional[float] = opt(None, "CUDA cores, ops/s; null = the datasheet's 67e12 (FP32)")
    layer_overhead_s: float = opt(4.0e-6, "one kernel launch per layer, seconds")
    overlap: bool = opt(True, "kernels overlap loads with arithmetic: time = max(transfer, compute)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("internal_memory", "bus_bandwidth"))
        require_positive(self, ("matrix_flops", "generic_flops"), nullable=True)
        if self.layer_overhead_s < 0:
            raise ValueError(f"layer_overhead_s={self.layer_overhead_s}: expected a number >= 0")


def _paper2012(**options: Any) -> Any:
    from hairlab_plugins.hardware.paper2012 import paper2012

    return paper2012(**options)


def _h100_sxm(**options: Any) -> Any:
    from hairlab_plugins.hardware.datasheet import datasheet

    return datasheet("h100_sxm", H100SXMOptions.__doc__.splitlines()[0],  # type: ignore[union-attr]
                     H100SXMOptions.DATASHEET_RATES, **options)


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
              "This machine's CPU: a per-kind time model fitted on in-place layer timings (torch, cached per thread).\n"
              "Pair with `hw-report --measure` to see prediction error per layer.", HostOptions),
        Entry("h100_sxm", _h100_sxm,
              "NVIDIA H100 SXM5 from its datasheet: 3.35 TB/s HBM3, 50 MB L2, dense tensor cores 989 TFLOPS "
              "BF16/FP16, 1979 TOPS INT8, 67 TFLOPS FP32 (hardware.dtype, default bf16).\n"
              "Peak figures, not measured: a lower bound on real latency.", H100SXMOptions),
    ]
