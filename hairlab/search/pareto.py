"""The non-dominated set of a collection of points (the accuracy-latency Pareto front).

A point is on the front when no other point is at least as good on every objective and
strictly better on one. Equal points do not dominate each other, so ties are all on the front.
A point with a missing, NaN or infinite value is never on it, and never dominates anything.
Pure Python, no numpy: a sweep has tens or hundreds of runs, O(n^2) is instant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hairlab.search.objective import Objective, parse


def _objectives(objectives: Sequence[Objective | str] | Any) -> list[Objective]:
    out = [o for o in objectives if isinstance(o, Objective)]
    if len(out) == len(objectives):
        return out
    return parse(list(objectives))


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def vectors(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> list[tuple[float, ...] | None]:
    """Each row as a tuple to maximise (minimised objectives negated); None when a value is unusable."""
    out: list[tuple[float, ...] | None] = []
    for row in rows:
        values = [_finite(o.value(row)) for o in objectives]
        finite = [v for v in values if v is not None]
        if len(finite) != len(values):
            out.append(None)
            continue
        out.append(tuple(v if o.direction == "maximize" else -v for o, v in zip(objectives, finite, strict=True)))
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` at least as good as ``b`` everywhere and better somewhere (both to maximise)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def front(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective | str]) -> list[int]:
    """Indices (in input order) of the rows on the Pareto front of ``objectives``.

    ``rows`` map metric names to values; ``objectives`` are :class:`Objective` or strings such as
    ``"val/acc:max"``. A row whose objective value is missing or not finite is left out.
    """
    objs = _objectives(objectives)
    if not objs:
        raise ValueError("front() needs at least one objective")
    vecs = vectors(rows, objs)
    usable = [(i, v) for i, v in enumerate(vecs) if v is not None]
    return [i for i, v in usable if not any(dominates(w, v) for j, w in usable if j != i)]
