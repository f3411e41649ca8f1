"""Statistics, budgets and the printed table (aligned columns) of the benchmark report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

HOLDS = "holds"
MISSED = "MISSED"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of 50 samples is the 25th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else math.nan,
        "max_ms": round(max(ms), 2) if ms else math.nan,
    }


def spread(values: Sequence[int]) -> dict[str, float]:
    return {"min": min(values), "max": max(values), "mean": round(statistics.fmean(values), 2)} if values else {}


def show_range(values: Sequence[int]) -> str:
    """One number when every sample agrees, else `min-max`."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


@dataclass
class Budget:
    name: str
    limit: str
    measured: str
    holds: bool
    note: str = ""

    @property
    def status(self) -> str:
        return HOLDS if self.holds else MISSED

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> str:
    """Columns padded to their widest cell; the first `left` columns align left, the rest right."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def section(title: str, body: str, notes: Sequence[str] = ()) -> str:
    parts = [title, "=" * len(title), body]
    parts += [f"  {note}" for note in notes]
    return "\n".join(parts)
