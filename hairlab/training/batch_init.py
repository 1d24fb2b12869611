"""Data-dependent initialisation: modules that fit themselves to the first training batch.

The block contract's optional hook (docs/plugins.md): a module with a method
``init_from_batch(x)`` is called once, before the first optimizer step of a fresh run, with
*its own input* on the first training batch: the batch exactly as step 1 sees it (augmented,
normalised, on the training device, in the engine's memory format), passed through the
modules before it. A whitening stem fits its filters to the patch statistics this way.

How, and why so:

- one forward pass in eval mode under ``no_grad``, a forward pre-hook on each such module
  calling its ``init_from_batch`` before it runs, so a later module sees the output of an
  earlier one already initialised; eval mode leaves BN's running statistics untouched, and
  the pass stops right after the last such module (a stem costs one small convolution);
- the engine generator's state is restored after the batch is drawn, so step 1 trains on the
  same batch with the same draws as a run without the hook, and a model without such modules
  draws nothing at all;
- a resumed run never calls it: its weights come from the checkpoint (the engine calls this
  only at step 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HOOK = "init_from_batch"


class _Done(Exception):
    """Raised by the last hook: the rest of the forward pass is not needed."""


def modules_with_hook(model: Any) -> list[Any]:
    """The modules of ``model`` (itself included) that define ``init_from_batch``."""
    return [m for m in model.modules() if callable(getattr(m, HOOK, None))]


def init_from_first_batch(model: Any, batches: Callable[[], Iterable[tuple[Any, Any]]], generator: Any) -> int:
    """Call every ``init_from_batch`` of ``model`` once on the first batch of ``batches()``.

    ``batches`` makes one training epoch with ``generator``, whose state is put back
    afterwards. Returns how many modules were initialised (0: nothing drawn, nothing run).
    """
    import torch

    pending = modules_with_hook(model)
    if not pending:
        return 0
    state = generator.get_state()
    try:
        x, _ = next(iter(batches()))
    finally:
        generator.set_state(state)
    remaining = set(map(id, pending))

    def pre_hook(module: Any, args: tuple[Any, ...]) -> None:
        if id(module) not in remaining:
            return
        getattr(module, HOOK)(args[0])
        remaining.discard(id(module))
        if not remaining:
            raise _Done

    handles = [m.register_forward_pre_hook(pre_hook) for m in pending]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except _Done:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return len(pending) - len(remaining)
