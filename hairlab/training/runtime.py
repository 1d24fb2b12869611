"""Where and how a run executes: device choice, threads, seeds, mixed precision."""

from __future__ import annotations

import os
import random
from typing import Any

from hairlab.errors import HairlabError


def resolve_device(name: str | None) -> Any:
    """``auto`` picks cuda, then mps, then cpu; anything else must be usable here."""
    import torch

    name = str(name or "auto")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise HairlabError(
            f"trainer.device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HairlabError(
            "trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise HairlabError("trainer.device=mps but MPS is not available; use trainer.device=auto or cpu")
    return dev


def set_threads(threads: int | None) -> int:
    """Apply ``trainer.threads`` (``None`` keeps torch's default: one per core)."""
    import torch

    if threads is not None:
        if int(threads) < 1:
            raise HairlabError(f"trainer.threads must be >= 1 or null, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def default_threads() -> int | None:
    """Threads per job when ``trainer.threads`` is null: a share of the cores under joblib.

    Parallel jobs that each take one thread per core oversubscribe the machine, and oneDNN's
    spinning threads make that far worse than sharing: two 2-thread trainings on 2 cores ran at
    about a fifth of one's speed here. Under Hydra's joblib launcher each job gets
    ``cores // n_jobs`` threads; elsewhere torch's default stands (None).
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # outside a Hydra job
        return None
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return None
    cores = os.cpu_count() or 1
    n_jobs = int(launcher.get("n_jobs") or -1)
    if n_jobs < 0:  # joblib's convention: -1 = every core, -2 = all but one, ...
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // n_jobs)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy (if present) and torch; optionally ask torch for deterministic kernels.

    On CPU the default kernels are already deterministic for a fixed thread count, so the
    same config and seed give identical metrics without the (slower) strict mode.
    """
    import torch

    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def amp_dtype(setting: Any, device: Any) -> Any:
    """The autocast dtype for ``trainer.amp`` (auto|true|false|bf16|fp16) or ``None`` for off."""
    return amp_choice(setting, device)[0]


def amp_choice(setting: Any, device: Any) -> tuple[Any, str, str]:
    """``trainer.amp`` as (autocast dtype or None, its name: fp32|bf16|fp16, why it was chosen).

    ``auto`` on CUDA: bf16 where supported, else fp16; on a CPU what the cached probe of
    :mod:`hairlab.training.precision` measured faster; on MPS off.
    """
    import torch

    value = str(setting).lower() if setting is not None else "auto"
    if value in ("false", "off", "none", "0"):
        return None, "fp32", "trainer.amp=false"
    if value not in ("auto", "true", "on", "1", "bf16", "bfloat16", "fp16", "float16"):
        raise HairlabError(f"trainer.amp={setting!r} is unknown; use auto, true, false, bf16 or fp16")
    if value in ("fp16", "float16"):
        return torch.float16, "fp16", f"trainer.amp={setting}"
    if value in ("bf16", "bfloat16"):
        return torch.bfloat16, "bf16", f"trainer.amp={setting}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16", "CUDA with bf16"
        return torch.float16, "fp16", "CUDA without bf16"
    if value == "auto":
        if device.type != "cpu":
            return None, "fp32", f"auto on {device.type}"
        from hairlab.training.precision import cpu_choice

        name, why = cpu_choice()
        return (torch.bfloat16 if name == "bf16" else None), name, f"auto: {why}"
    return torch.bfloat16, "bf16", f"trainer.amp={setting}"
