"""Which way is better for a metric, read from its name: one rule for every place that must guess.

Early stopping (``trainer.early_stop.mode: null``) and a search objective without a direction
both rely on it, so ``val/loss`` is never minimised by one and maximised by the other. Losses,
errors, times and costs (``latency_s``, ``ops``, ``params``, ...) get lower; everything else
(accuracies, ``throughput/img_s``) higher. Give the direction explicitly for anything else.
"""

from __future__ import annotations

#: Last name segments (after the final ``/``) whose values are better when lower.
LOWER_IS_BETTER = frozenset({
    "loss", "error", "latency_s", "compute_s", "transfer_s", "epoch_s", "load_s", "first_decode_s",
    "ops", "flops", "macs", "params", "bytes",
})


def higher_is_better(metric: str) -> bool:
    """False for losses, errors, times and costs; True otherwise (accuracy, images per second)."""
    last = metric.rsplit("/", 1)[-1].lower()
    if last in LOWER_IS_BETTER or "loss" in last or "error" in last:
        return False
    return not (last.endswith("_s") and last != "img_s")  # a duration, but not a rate
