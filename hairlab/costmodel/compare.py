"""Compare a report with a printed reference table (a target's ``Reference``) to its precision.

A printed number carries its own precision: ``0.006426`` is known to 6 decimals, ``8.67E-05``
to 3 significant digits, ``86704128`` exactly. A computed value matches when it rounds to the
printed one, i.e. lies within half a unit of the last printed digit. The appendix's ``ops``
column is a row's ``flops`` (its own name for the same count, kept as ``Row.ops``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hairlab.costmodel.engine import APPENDIX_COLUMNS, Report

NUMERIC = ("in_map_MB", "out_map_MB", "param_MB", "ops", "transfer_time_s", "compute_time_s", "total_time_s")


def half_ulp(text: str) -> float:
    """Half a unit in the last place of a printed number."""
    text = text.strip()
    if "e" in text.lower():
        mantissa, _, exp = text.lower().partition("e")
        decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
        return 0.5 * 10.0 ** (int(exp) - decimals)
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return 0.5 * 10.0 ** (-decimals)


def matches_printed(value: float, text: str) -> bool:
    """Whether ``value`` rounds to the printed ``text``."""
    printed = float(text)
    return abs(value - printed) <= half_ulp(text) * (1 + 1e-9) + 1e-15 * abs(printed)


def load_reference(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def mismatches(report: Report, reference: list[dict[str, str]]) -> list[str]:
    """Every cell (and the row count) where the report departs from the reference."""
    problems = []
    if len(report.rows) != len(reference):
        problems.append(f"{len(report.rows)} rows, reference has {len(reference)}")
    for row, ref in zip(report.rows, reference, strict=False):
        for col in APPENDIX_COLUMNS:
            want = ref.get(col)
            if want is None:
                continue
            got = getattr(row, col)
            ok = matches_printed(float(got), want) if col in NUMERIC else str(got) == want
            if not ok:
                problems.append(f"row {row.index} {col}: got {got!r}, printed {want}")
    return problems


def side_by_side(report: Report, reference: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows pairing each computed value with the printed one and whether they agree."""
    out = []
    for i in range(max(len(report.rows), len(reference))):
        row = report.rows[i] if i < len(report.rows) else None
        ref = reference[i] if i < len(reference) else {}
        item: dict[str, Any] = {"row": i + 1}
        for col in APPENDIX_COLUMNS:
            got, want = (getattr(row, col) if row is not None else None), ref.get(col)
            if col in NUMERIC:
                ok = got is not None and want is not None and matches_printed(float(got), want)
            else:
                ok = got == want
            item[col] = (got, want, ok)
        out.append(item)
    return out


def total_matches(report: Report, printed: str) -> bool:
    return matches_printed(report.totals["latency_s"], printed)

