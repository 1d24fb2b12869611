"""Checkpoints: everything needed to continue a run exactly where an epoch ended.

Written atomically (temporary file, then rename), so a run killed while saving leaves the
previous checkpoint intact; read with ``torch.load(weights_only=True)``, so a checkpoint
cannot execute code when loaded.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

FORMAT = 1
LAST = "last.pt"


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
    torch.save({"format": FORMAT, **state}, tmp)
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
