"""Markdown cell formatting for statistics: coefficients, p-values, intervals, metric labels.

One place decides how a statistic reads in a table, so every table prints a
p-value the same way (never ``0.0000``: a permutation p-value is never 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["format_ci", "format_p", "format_value", "label"]


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and bool(np.isnan(v)))


def format_value(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals, ``n/a`` when missing or NaN."""
    return "n/a" if _missing(v) else f"{float(v):.{digits}f}"


def format_p(p: float | None) -> str:
    """A p-value in (0, 1]: three decimals, two significant digits below 0.001, ``n/a`` when missing."""
    if _missing(p):
        return "n/a"
    p = float(p)
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def format_ci(low: float | None, high: float | None, digits: int = 3) -> str:
    """``[low, high]``, or ``n/a`` when either bound is missing."""
    if _missing(low) or _missing(high):
        return "n/a"
    return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"


def label(metric: str, labels: Mapping[str, str] | None = None) -> str:
    """Display name of ``metric`` from ``labels`` (e.g. the report's), the name itself otherwise."""
    return (labels or {}).get(metric, metric)
