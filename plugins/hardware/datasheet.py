"""Present-day hardware described from its datasheet (no calibration, nothing measured).

``h100_sxm``: NVIDIA H100 SXM5 80 GB. Public datasheet figures: 3.35 TB/s HBM3, 50 MB L2,
989 TFLOPS dense BF16/FP16 on tensor cores, 67 TFLOPS FP32 on CUDA cores. Mapped onto the
engine: HBM is the external memory, L2 the internal one, tensor cores the matrix unit (so
2 bytes per element), CUDA cores the generic unit; kernels overlap loads with arithmetic
(``overlap: true``), and each layer pays a kernel launch (about 4 us with CUDA graphs off).
Peak figures: real kernels reach a fraction of them, most of all on small, batch-1 layers.
"""

from __future__ import annotations

from typing import Any

from hairlab.costmodel.target import Conventions, Target, common_options, reject_unknown
from hairlab.errors import HairlabError

PRESETS: dict[str, dict[str, Any]] = {
    "h100_sxm": {
        "description": "NVIDIA H100 SXM5 80GB (datasheet peaks: 3.35 TB/s HBM3, 50 MB L2, "
                       "989 TFLOPS BF16 dense, 67 TFLOPS FP32)",
        "internal_memory": 50e6, "bus_bandwidth": 3.35e12, "matrix_flops": 989e12,
        "generic_flops": 67e12, "layer_overhead_s": 4e-6, "bytes_per_element": 2, "overlap": True,
    },
}
DATASHEET = Conventions(locality="working_set", input_location="external")
_KEYS = ["internal_memory", "bus_bandwidth", "matrix_flops", "generic_flops", "layer_overhead_s",
         "batch_size", "overlap", "double_buffer", "bytes_per_element", "input_size"]


def datasheet(preset: str, **options: Any) -> Target:
    """A target from a preset's datasheet numbers, any of them overridable."""
    spec = dict(PRESETS[preset])
    options = dict(options)
    description = spec.pop("description")
    for key in ("overlap", "bytes_per_element"):
        options.setdefault(key, spec.pop(key))
    common = common_options(options)
    hw = {k: options.pop(k, v) for k, v in spec.items()}
    reject_unknown(preset, options, _KEYS)
    for key, value in hw.items():
        try:
            hw[key] = float(value)
        except (TypeError, ValueError):
            raise HairlabError(f"hardware.{key} must be a positive number, got {value!r}") from None
    return Target(name=preset, mode="datasheet", description=description, conventions=DATASHEET,
                  notes=(f"{preset}: datasheet peak figures, not measured (plugins/hardware/datasheet.py)",),
                  **hw, **common)
