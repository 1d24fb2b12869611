"""Present-day hardware described from its datasheet (no calibration, nothing measured).

A datasheet target's figures are its schema's defaults (``H100SXMOptions`` in this plugin's
``__init__``: the only place they are written). Mapped onto the engine: the external memory
(HBM) streams over the bus, the on-chip cache (L2) is the internal memory, the matrix unit
(tensor cores) and the generic unit (CUDA cores) have their peak rates. Peak figures: real
kernels reach a fraction of them, most of all on small, batch-1 layers.
"""

from __future__ import annotations

from typing import Any

from hairlab.costmodel.target import Conventions, Target, common_options

DATASHEET = Conventions(locality="working_set", input_location="external")
_RATES = ("internal_memory", "bus_bandwidth", "matrix_flops", "generic_flops", "layer_overhead_s")


def datasheet(name: str, description: str, **options: Any) -> Target:
    """A target from datasheet figures (the options, checked by the contract against the schema)."""
    options = dict(options)
    hw = {k: float(options.pop(k)) for k in _RATES}
    common = common_options(options)
    return Target(name=name, mode="datasheet", description=description, conventions=DATASHEET,
                  notes=(f"{name}: datasheet peak figures, not measured (plugins/hardware/__init__.py)",),
                  **hw, **common)
