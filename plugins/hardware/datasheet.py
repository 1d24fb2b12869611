"""Present-day hardware described from its datasheet (no calibration, nothing measured).

A datasheet target's figures are its schema's defaults (``H100SXMOptions`` in this plugin's
``__init__``: the only place they are written). Mapped onto the engine: the external memory
(HBM) streams over the bus, the on-chip cache (L2) is the internal memory, the matrix unit
(tensor cores) and the generic unit (CUDA cores) have their peak rates. Peak figures: real
kernels reach a fraction of them, most of all on small, batch-1 layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hairlab.costmodel.target import Conventions, Target, common_options

DATASHEET = Conventions(locality="working_set", input_location="external")
_FIGURES = ("internal_memory", "bus_bandwidth", "layer_overhead_s")


def datasheet(name: str, description: str, rates: Mapping[str, tuple[float, float]], **options: Any) -> Target:
    """A target from datasheet figures (the options, checked by the contract against the schema).

    ``rates`` are the datasheet's ``(matrix, generic)`` ops/s per data type; ``matrix_flops`` or
    ``generic_flops`` given as options replace the chosen type's figure.
    """
    options = dict(options)
    hw: dict[str, Any] = {k: float(options.pop(k)) for k in _FIGURES}
    common = common_options(options, DATASHEET)
    table = dict(rates)
    dtype = common["dtype"]
    if dtype in table:  # (a type without figures is the Target's one-line error)
        matrix, generic = table[dtype]
        given_matrix, given_generic = options.pop("matrix_flops", None), options.pop("generic_flops", None)
        table[dtype] = (float(matrix if given_matrix is None else given_matrix),
                        float(generic if given_generic is None else given_generic))
    matrix, generic = table.get(dtype, (1.0, 1.0))
    return Target(name=name, mode="datasheet", description=description,
                  notes=(f"{name}: datasheet peak figures (dense, no sparsity), not measured "
                         "(plugins/hardware/__init__.py)",),
                  matrix_flops=matrix, generic_flops=generic, dtype_rates=table, **hw, **common)
