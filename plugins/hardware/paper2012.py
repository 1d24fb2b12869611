"""The paper's 2012-era accelerator (Section 5), in a faithful and a corrected mode.

Stated hardware: unbounded external memory, a 1 GB/s bus to 1 MB of internal memory,
1 TFLOPS of matrix compute, 10 GFLOPS of generic host compute, no overlap, unbatched.
``faithful`` adds the counting rules the appendix actually follows (each one a flag in
:class:`~hairlab.costmodel.target.Conventions`; docs/paper-errata.md explains them);
``corrected`` counts the same hardware correctly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hairlab.costmodel.target import Conventions, Target, common_options, reject_unknown
from hairlab.errors import HairlabError

MODES = ("faithful", "corrected")
#: The generic rate the text states (10 GFLOPS) and the one the appendix's times imply.
STATED_GENERIC_FLOPS = 10e9
APPENDIX_GENERIC_FLOPS = 1e9
#: The appendix as printed (a clean transcription; 66 rows summing to 0.177 s).
APPENDIX = Path(__file__).with_name("appendix_table.csv")
APPENDIX_TOTAL_S = "0.177"

FAITHFUL = Conventions(
    fuse_bn_relu=True, bn_ops=4.0, relu_ops=1.0, pool_ops=1.0, softmax_ops=3.0,
    depthwise_ops="dense", locality="per_map", input_location="auto", append_softmax=True,
    duplicate_interstage_pools=True, pool_before_gap=True,
)
CORRECTED = Conventions(
    fuse_bn_relu=True, bn_ops=2.0, relu_ops=1.0, pool_ops=1.0, softmax_ops=3.0,
    depthwise_ops="grouped", locality="working_set", input_location="external", append_softmax=True,
    duplicate_interstage_pools=False, pool_before_gap=False,
)

_KEYS = ["mode", "internal_memory", "bus_bandwidth", "matrix_flops", "generic_flops", "layer_overhead_s",
         "batch_size", "overlap", "double_buffer", "bytes_per_element", "input_size"]


def paper2012(**options: Any) -> Target:
    """Build the target; ``generic_flops`` defaults to what the mode implies."""
    options = dict(options)
    mode = str(options.pop("mode", "faithful"))
    if mode not in MODES:
        raise HairlabError(f"hardware.mode={mode!r} is unknown for paper2012; choose faithful or corrected")
    common = common_options(options)
    hw = {
        "internal_memory": options.pop("internal_memory", 1e6),
        "bus_bandwidth": options.pop("bus_bandwidth", 1e9),
        "matrix_flops": options.pop("matrix_flops", 1e12),
        "layer_overhead_s": options.pop("layer_overhead_s", 0.0),
    }
    generic = options.pop("generic_flops", None)
    reject_unknown("paper2012", options, _KEYS)
    if generic is None:
        generic = APPENDIX_GENERIC_FLOPS if mode == "faithful" else STATED_GENERIC_FLOPS
    notes = ("Section 5: 1 GB/s bus, 1 MB internal memory, 1 TFLOPS matrix, 10 GFLOPS generic (stated)",)
    if mode == "faithful":
        notes += ("faithful: the appendix's rules (1 GFLOPS generic, depthwise counted as dense, "
                  "per-map locality, duplicated pools); see docs/paper-errata.md",)
    hw = {k: _number(k, v) for k, v in hw.items()}
    generic = _number("generic_flops", generic)
    return Target(
        name="paper2012", mode=mode,
        description=f"HairNet paper's 2012 accelerator ({mode})",
        generic_flops=generic, conventions=FAITHFUL if mode == "faithful" else CORRECTED,
        notes=notes, reference_table=str(APPENDIX), reference_total_s=APPENDIX_TOTAL_S, **hw, **common,
    )


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HairlabError(f"hardware.{key} must be a positive number, got {value!r}") from None
