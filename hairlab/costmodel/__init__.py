"""The analytical hardware cost model behind ``hairlab hw-report`` and the ``hw/*`` metrics.

Layers come from a real forward pass (:mod:`.layers`), targets from the ``hardware`` plugin
kind (:mod:`.target`), costs from :mod:`.engine`. Imports are lazy so that importing this
package does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["latency_metrics", "target_from_config"]


def latency_metrics(model: Any, input_shape: tuple[int, int, int], targets: list[str]) -> dict[str, float]:
    """``{"hw/<target>/latency_s": ..., "hw/<target>/flops": ...}`` for each target name.

    See :func:`hairlab.costmodel.api.latency_metrics`.
    """
    from hairlab.costmodel.api import latency_metrics as impl

    return impl(model, input_shape, targets)


def target_from_config(hw_cfg: Any, **overrides: Any) -> Any:
    """A target from a ``hardware`` config node (see :func:`hairlab.costmodel.api.target_from_config`)."""
    from hairlab.costmodel.api import target_from_config as impl

    return impl(hw_cfg, **overrides)
