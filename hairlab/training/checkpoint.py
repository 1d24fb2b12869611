"""Checkpoints: everything needed to continue a run exactly where an epoch ended.

Written atomically (temporary file, then rename), so a run killed while saving leaves the
previous checkpoint intact; read with ``torch.load(weights_only=True)``, so a checkpoint
cannot execute code when loaded.

Each checkpoint also carries the identity of the job that wrote it (its job key, code
version and result parameters, see :mod:`hairlab.tracking.identity`), so continuing it with
another config is refused by name instead of silently training on with the old settings.
The runner sets it once per job with :func:`identify`; :func:`save` adds it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

FORMAT = 1
LAST = "last.pt"
#: The weights of the best curve point by the selection metric (``trainer.checkpoint=best|both``):
#: model state, epoch, step and ``best`` = {metric, value, step}; not resumable (no optimizer).
BEST = "best.pt"

#: The identity of the job running in this process (set by the runner), stored in every checkpoint.
_identity: dict[str, Any] = {}


def identify(job_key: str, code: str, params: dict[str, str]) -> None:
    """Set the identity :func:`save` stores: this job's key, code version and result parameters."""
    _identity.clear()
    _identity.update({"job_key": job_key, "code": code, "params": dict(params)})


def identity(state: dict[str, Any]) -> dict[str, Any] | None:
    """The identity a loaded checkpoint was written with (None for checkpoints from before it)."""
    found = state.get("identity")
    return found if isinstance(found, dict) and found.get("job_key") else None


def rng_state(generator: Any) -> dict[str, Any]:
    """Every random stream the engine draws from."""
    import torch

    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "data": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_version, list(py_state), py_gauss],
    }


def set_rng_state(state: dict[str, Any], generator: Any) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def save(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    extra = {"identity": dict(_identity)} if _identity else {}
    torch.save({"format": FORMAT, **extra, **state}, tmp)
    os.replace(tmp, path)
    return path


def find(resume: str | os.PathLike[str], default_dir: Path) -> Path | None:
    """The checkpoint ``trainer.resume`` points at.

    ``auto`` (or ``true``) means this run's own checkpoint directory, if it has one (useful
    with a fixed ``hydra.run.dir``); a directory means its ``last.pt`` (or its
    ``checkpoints/last.pt``: a killed run's job directory works); a file is taken as is.
    """
    text = str(resume)
    if text.lower() in ("auto", "true"):
        candidate = default_dir / LAST
        return candidate if candidate.is_file() else None
    p = Path(text).expanduser()
    for candidate in (p, p / LAST, p / "checkpoints" / LAST):
        if candidate.is_file():
            return candidate
    raise HairlabError(
        f"trainer.resume={text!r}: no checkpoint there (looked for the file, {LAST} and checkpoints/{LAST}); "
        "point it at a run's job directory or checkpoint file, or use trainer.resume=auto"
    )


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save`, loaded without unpickling arbitrary objects."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HairlabError(
            f"checkpoint {path} cannot be read ({first}); it is corrupt or not a hairlab checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise HairlabError(f"checkpoint {path} is not a hairlab checkpoint (format {FORMAT})")
    return state


def check_identity(path: Path, job_key: str, params: dict[str, str], *, allow: bool = False) -> None:
    """Refuse to continue a checkpoint written by a job of another key, naming what differs.

    ``allow`` (``trainer.resume_mismatch=allow``) continues anyway. A checkpoint from before
    identities were stored is accepted as it is.
    """
    from hairlab.tracking.identity import differing

    stored = identity(load(path))
    if stored is None or stored["job_key"] == job_key or allow:
        return
    keys = differing(stored.get("params") or {}, params)
    if keys:
        old, new = stored.get("params") or {}, params
        shown = ", ".join(f"{k} ({old.get(k, 'unset')} -> {new.get(k, 'unset')})" for k in keys[:5])
        what = shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    else:
        from hairlab.tracking.identity import code_version

        what = f"the code version ({stored.get('code')} -> {code_version()})"
    raise HairlabError(
        f"trainer.resume: checkpoint {path} was written by a job with other settings: {what}; "
        "resume with the same config, or add trainer.resume_mismatch=allow to continue it anyway"
    )
