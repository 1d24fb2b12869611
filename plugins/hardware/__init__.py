"""Built-in hardware targets for ``hairlab hw-report`` and the ``hw/<target>/*`` metrics.

``paper2012``: the HairNet paper's 2012 accelerator, ``mode: faithful`` (reproduces the
appendix) or ``corrected``. ``host``: this machine's CPU, calibrated with torch (cached).
``h100_sxm``: a present-day GPU described from its datasheet.
Factories import their modules lazily, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from hairlab import hookimpl
from hairlab.registry import Entry


def _paper2012(**options: Any) -> Any:
    from hairlab_plugins.hardware.paper2012 import paper2012

    return paper2012(**options)


def _h100_sxm(**options: Any) -> Any:
    from hairlab_plugins.hardware.datasheet import datasheet

    return datasheet("h100_sxm", **options)


def _host(**options: Any) -> Any:
    from hairlab_plugins.hardware.host import host

    return host(**options)


@hookimpl
def hairlab_hardware() -> list[Entry]:
    return [
        Entry("paper2012", _paper2012,
              "The paper's 2012 accelerator: 1 GB/s bus, 1 MB internal, 1 TFLOPS matrix, 10 GFLOPS host.\n"
              "mode=faithful reproduces the appendix's 66 rows (0.177 s); mode=corrected counts it right."),
        Entry("host", _host,
              "This machine's CPU: GEMM, element-wise and memory rates measured with torch, cached.\n"
              "Pair with `hw-report --measure` to see prediction error per layer."),
        Entry("h100_sxm", _h100_sxm,
              "NVIDIA H100 SXM5 from its datasheet: 3.35 TB/s HBM3, 50 MB L2, 989 TFLOPS BF16, "
              "67 TFLOPS FP32.\n"
              "Peak figures, not measured: a lower bound on real latency."),
    ]
