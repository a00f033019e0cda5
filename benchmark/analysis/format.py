"""Markdown cell formatting for statistics: coefficients, p-values, intervals, metric labels.

One place decides how a statistic reads in a table, so every table prints a
p-value the same way (never ``0.0000``: a permutation p-value is never 0), an
interval that could not be estimated the same way (``not estimable (n = 5)``,
never ``[1.000, 1.000]``), and a lower-is-better metric the same way (``−LPIPS``:
its correlations are given with the sign flipped).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["MINUS", "format_ci", "format_estimate", "format_p", "format_value", "label", "oriented_label", "sign_note"]

MINUS = "\u2212"  # the sign of a flipped metric: "−LPIPS"


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


def format_ci(low: float | None, high: float | None, digits: int = 3, n: int | None = None) -> str:
    """``[low, high]``; when either bound is missing, ``not estimable (n = <n>)`` if ``n`` is given (the
    statistic exists but its interval does not), ``n/a`` otherwise."""
    if _missing(low) or _missing(high):
        return "n/a" if n is None else f"not estimable (n = {int(n)})"
    return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"


def format_estimate(statistic: float, low: float, high: float, p: float, n: int, digits: int = 3) -> str:
    """``r [low, high], p <p>``, or ``n/a`` when the statistic is undefined; an interval that could not be
    estimated reads ``not estimable (n = <n>)``."""
    if _missing(statistic):
        return "n/a"
    return f"{format_value(statistic, digits)} {format_ci(low, high, digits, n)}, p {format_p(p)}"


def label(metric: str, labels: Mapping[str, str] | None = None) -> str:
    """Display name of ``metric`` from ``labels`` (e.g. the report's), the name itself otherwise."""
    return (labels or {}).get(metric, metric)


def oriented_label(metric: str, sign: int, labels: Mapping[str, str] | None = None) -> str:
    """Display name of ``metric`` as correlated: ``−<label>`` when ``sign`` is -1 (a lower-is-better metric whose
    correlations are given with the sign flipped, so that a positive value means better quality)."""
    name = label(metric, labels)
    return f"{MINUS}{name}" if int(sign) < 0 else name


def sign_note(flipped: list[str]) -> str:
    """The sentence explaining flipped metrics (their display labels, e.g. ``["LPIPS"]``); empty when none is."""
    if not flipped:
        return ""
    names = ", ".join(f"{MINUS}{name}" for name in dict.fromkeys(flipped))
    return (f"{names}: lower is better, so correlations are given with the sign flipped; a positive value always "
            "means the score tracks better quality.")
