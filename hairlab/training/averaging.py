"""``trainer.ema``: an exponential moving average of the weights, the model every evaluation uses.

Built on ``torch.optim.swa_utils.AveragedModel`` (the averaged copy, its update count and its
state dict) with our own multi-tensor update: a ``torch._foreach_lerp_`` per device and dtype as
in ``get_ema_multi_avg_fn``, except that integer buffers (BN's ``num_batches_tracked``) are
copied rather than blended and truncated.

BatchNorm's running statistics are **averaged like the weights** by default
(``buffers=average``, timm's ModelEma choice): the statistics the averaged weights are evaluated
with are then an average over the same stretch of training as the weights themselves, rather
than the statistics of the latest raw weights (``buffers=copy``, torch's ``use_buffers=False``).
Neither recomputes the statistics for the averaged weights (``swa_utils.update_bn``: a pass over
the training data, too dear to do at every evaluation).

Until the first update (``warmup``), the raw model is the one evaluated.

``lookahead=true`` copies the average back into the trained weights at every update: Lookahead
(Zhang et al. 2019) with k = ``every`` and alpha = 1 - decay, as airbench94 runs it (the
optimizer's state is kept, as in the paper; with ``buffers=average`` BN statistics are synced too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional

from hairlab.contract.schema import opt


@dataclass
class EMAConfig:
    """``trainer.ema``: how the weights are averaged (null = off, true = these defaults)."""

    decay: float = opt(0.999, "the average's decay per update, in [0, 1]: 0 = the raw weights, 1 = frozen at "
                              "the first update; ignored when half_life is set")
    half_life: Optional[float] = opt(None, "steps after which a weight's share of the average halves, > 0 "
                                           "(decay = 0.5 ** (every / half_life)); null = use decay")
    every: int = opt(1, "update the average every N optimizer steps, >= 1")
    warmup: float = opt(0.0, "when averaging starts: steps (>= 1), or a fraction (< 1) of the run (of the "
                             "budget under trainer.max_minutes); until then the raw weights are evaluated")
    buffers: Literal["average", "copy"] = opt(
        "average", "BN running statistics: average them like the weights, or copy the raw model's")
    lookahead: bool = opt(False, "copy the average back into the trained weights at every update (Lookahead: "
                                 "k = every, alpha = 1 - decay)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay={self.decay}: expected a number in [0, 1]")
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"half_life={self.half_life}: expected a number of steps > 0 or null")
        if self.every < 1:
            raise ValueError(f"every={self.every}: expected an integer >= 1")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}: expected steps >= 1 or a fraction in [0, 1)")
        if str(self.buffers) not in ("average", "copy"):
            raise ValueError(f"buffers={self.buffers!r}: expected average or copy")

    def per_update(self) -> float:
        """The decay applied at each update."""
        if self.half_life is not None:
            return float(0.5 ** (self.every / self.half_life))
        return float(self.decay)

    def describe(self) -> str:
        start = (f"from {self.warmup:.0%} of the run" if 0 < self.warmup < 1
                 else f"from step {int(self.warmup)}" if self.warmup else "from step 1")
        what = "Lookahead average" if self.lookahead else "EMA of the weights"
        return (f"{what} (decay {self.per_update():.4g} every {self.every} steps, {start}, "
                f"BN statistics {'averaged' if self.buffers == 'average' else 'copied'})")


class WeightAverage:
    """The averaged copy of a model and the rule for when to update it."""

    def __init__(self, model: Any, cfg: EMAConfig) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.cfg = cfg
        self.decay = cfg.per_update()
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp,  # type: ignore[arg-type]
                                      use_buffers=cfg.buffers == "average")
        self.averaged.eval()

    def _lerp(self, averaged: list[Any], current: list[Any], _count: Any) -> None:
        import torch

        with torch.no_grad():
            if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
                torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
            else:  # integer buffers (BN's batch counter): the raw model's value
                for a, c in zip(averaged, current, strict=True):
                    a.copy_(c)

    def started(self) -> bool:
        return int(self.averaged.n_averaged) > 0

    def due(self, step: int, progress: Callable[[int], float]) -> bool:
        """Whether the average takes in the weights after optimizer step ``step``."""
        warm = self.cfg.warmup
        if warm >= 1:
            if step < warm:
                return False
        elif warm > 0 and progress(step) < warm:
            return False
        return self.started() is False or step % self.cfg.every == 0

    def update(self, model: Any, step: int, progress: Callable[[int], float]) -> None:
        if self.due(step, progress):
            self.averaged.update_parameters(model)
            if self.cfg.lookahead:
                self._sync_back(model)

    def _sync_back(self, model: Any) -> None:
        """Lookahead: the trained weights restart from the average (floating-point tensors only)."""
        import itertools

        import torch

        average, trained = self.averaged.module, model
        pairs: Any = zip(average.parameters(), trained.parameters(), strict=True)
        if self.cfg.buffers == "average":
            pairs = itertools.chain(pairs, zip(average.buffers(), trained.buffers(), strict=True))
        with torch.no_grad():
            for a, t in pairs:
                if t.is_floating_point():
                    t.copy_(a)

    def model(self, raw: Any) -> Any:
        """The model to evaluate: the average once it has begun, else ``raw``."""
        return self.averaged.module if self.started() else raw

    def state_dict(self) -> dict[str, Any]:
        return dict(self.averaged.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
