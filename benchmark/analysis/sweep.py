"""Lambda x threshold sweep of a score-quality correlation, with the best cell chosen on held-out data.

Picking the best of many (lambda, threshold) cells and reporting its
correlation on the same samples overstates it. :func:`correlation_sweep`
therefore splits the samples in two halves with a fixed seed
(:func:`split_halves`: stratified by model, or by whole input when ``units``
is given), computes every cell's correlation on the *selection* half only,
chooses the best cell there, and reports that cell's correlation with its
permutation p-value and BCa CI on the *held-out* half, together with the
default cell's held-out value (not chosen from data, so also honest).
:func:`plot_sweep_heatmap` draws the selection-half grid with the chosen and
default cells marked and the held-out values written on the figure;
:func:`render_sweep` gives the Markdown sentence.

IMACS at (lambda, threshold index t) is ``a[:, t] - lambda * b[:, t]`` with
``a``/``b`` the inside/outside terms stored per sample
(:func:`benchmark.scoring.imacs.imacs_terms`), so the grid costs no map recomputation.

Every correlation is of the score against the quality oriented so that higher
is better (``sign`` = -1 for a lower-is-better quality such as LPIPS: the
quality enters negated), so the best cell is the one whose score tracks
better quality most, whatever the metric's direction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from benchmark.analysis.bootstrap import drop_nan
from benchmark.analysis.correlation import METHODS, MIN_PAIRS, Method, correlation, statistic_along
from benchmark.analysis.format import format_estimate, format_value
from benchmark.analysis.resampling import Resampling
from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD

DEFAULT_CELL: tuple[float, float] = (DEFAULT_LAMBDA, DEFAULT_THRESHOLD)
HELD_OUT_COLUMNS = ("held_out", "held_out_p", "held_out_ci_low", "held_out_ci_high", "held_out_note")
SCOPE_TEXT = "samples pooled over models"

__all__ = ["DEFAULT_CELL", "SweepData", "SweepGrid", "correlation_sweep", "plot_sweep_heatmap", "render_sweep",
           "split_halves"]


def split_halves(groups: ArrayLike, seed: int = 0, units: ArrayLike | None = None) -> np.ndarray:
    """Seeded split of samples into a selection half (True) and a held-out half (False).

    Args:
        groups: (S,) group label per sample (the model). Without ``units``,
            each group is split in half on its own (stratified); odd groups
            give their extra sample alternately to the held-out and the
            selection half, so the halves differ by at most one sample.
        seed: seed of the split.
        units: optional (S,) unit per sample (e.g. the input's sample id):
            all samples of one unit go to the same half, so the halves share
            no input; the unique units are split in half. When every model
            sees the same inputs this is balanced per model as well.

    Returns:
        (S,) bool, True for the selection half.
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {g.shape}")
    rng = np.random.default_rng(seed)
    if units is not None:
        u = np.asarray(units)
        if u.shape != g.shape:
            raise ValueError(f"units has shape {u.shape}, groups {g.shape}")
        levels = np.unique(u)
        chosen = rng.permutation(levels)[: levels.size // 2]
        return np.isin(u, chosen)
    selection = np.zeros(g.size, dtype=bool)
    extra_to_selection = False
    for level in np.unique(g):
        idx = rng.permutation(np.flatnonzero(g == level))
        k = idx.size // 2 + (idx.size % 2 if extra_to_selection else 0)
        if idx.size % 2:
            extra_to_selection = not extra_to_selection
        selection[idx[:k]] = True
    return selection


@dataclass(frozen=True)
class SweepGrid:
    """The (lambda, threshold) cells of a sweep.

    Attributes:
        lambdas, thresholds: grid values (non-empty, no duplicates).
        default: (lambda, threshold) of the default cell, which must be on the grid; also evaluated on the
            held-out half. None skips it.
    """

    lambdas: Sequence[float]
    thresholds: Sequence[float]
    default: tuple[float, float] | None = DEFAULT_CELL

    def __post_init__(self) -> None:
        for name, grid in (("lambdas", self.lambdas), ("thresholds", self.thresholds)):
            if len(grid) == 0 or len(set(grid)) != len(grid):
                raise ValueError(f"{name} must be non-empty without duplicates, got {list(grid)}")


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class SweepData:
    """The samples a sweep correlates.

    Attributes:
        a, b: (S, T) inside / outside IMACS terms per sample at each of the T thresholds of the grid; NaN where
            the score is undefined.
        quality: (S,) per-sample quality (NaN allowed).
        groups: (S,) model per sample (stratifies the split).
        units: optional (S,) input id per sample; see :func:`split_halves`.
        sign: -1 for a lower-is-better quality, which is negated before every correlation
            (:func:`benchmark.analysis.validity.orientation`), else 1.
    """

    a: ArrayLike
    b: ArrayLike
    quality: ArrayLike
    groups: ArrayLike
    units: ArrayLike | None = None
    sign: int = 1

    def __post_init__(self) -> None:
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {self.sign!r}")


def correlation_sweep(
    data: SweepData,
    grid: SweepGrid,
    method: Method = "spearman",
    resampling: Resampling = Resampling(),
) -> pd.DataFrame:
    """Correlation of ``a - lambda * b`` with quality over a grid, best cell chosen on a held-out split.

    Args:
        data: the terms, quality, models (and inputs) of the samples, and the quality's orientation.
        grid: the (lambda, threshold) cells and the default cell.
        method: ``"spearman"`` or ``"pearson"``, over the samples of all models
            pooled; the chosen cell has the largest selection-half correlation
            with the oriented quality (the first in grid order on ties; NaN
            cells never win).
        resampling: ``seed`` of the split, the permutations and the resampling; ``n_boot``,
            ``n_permutations``, ``confidence``: held-out evaluation settings, see
            :func:`benchmark.analysis.correlation.correlation`.

    Returns:
        Tidy frame, one row per (lambda, threshold) in grid order, columns
        ``lambda, threshold, method, sign`` (-1 when the quality entered negated),
        ``scope`` (``"pooled"``), ``n_selection, selection``
        (correlation on the selection half), ``chosen``, ``default`` (bools), ``n_held_out``
        (the cell's complete pairs in the held-out half; on evaluated rows,
        the pairs the held-out correlation used) and, on the chosen
        and the default rows only, ``held_out, held_out_p, held_out_ci_low,
        held_out_ci_high, held_out_note`` (NaN / "" elsewhere), plus
        ``split_seed``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    sign, seed = data.sign, resampling.seed
    av, bv = np.asarray(data.a, dtype=np.float64), np.asarray(data.b, dtype=np.float64)
    q = sign * np.asarray(data.quality, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"quality must be 1-D, got shape {q.shape}")
    expected = (q.size, len(grid.thresholds))
    if av.shape != expected or bv.shape != expected:
        raise ValueError(f"a and b must have shape (samples, thresholds) = {expected}, got {av.shape} and {bv.shape}")
    lam_grid, thr_grid = np.asarray(grid.lambdas, dtype=np.float64), np.asarray(grid.thresholds, dtype=np.float64)
    default_ij = None
    if grid.default is not None:
        default_ij = (_grid_index(lam_grid, grid.default[0], "lambda"),
                      _grid_index(thr_grid, grid.default[1], "threshold"))

    sel = split_halves(np.asarray(data.groups), seed=seed, units=data.units)
    if sel.size != q.size:
        raise ValueError(f"groups has {sel.size} entries for {q.size} samples")

    def score(i: int, j: int) -> np.ndarray:
        return av[:, j] - lam_grid[i] * bv[:, j]

    n_sel = np.zeros((lam_grid.size, thr_grid.size), dtype=int)
    n_out = np.zeros_like(n_sel)
    values = np.full(n_sel.shape, np.nan)
    for i in range(lam_grid.size):
        for j in range(thr_grid.size):
            s = score(i, j)
            (xs, ys), _ = drop_nan(s[sel], q[sel])
            n_sel[i, j] = xs.size
            values[i, j] = float(statistic_along(method, xs, ys)) if xs.size >= MIN_PAIRS else float("nan")
            n_out[i, j] = int((np.isfinite(s[~sel]) & np.isfinite(q[~sel])).sum())
    # Selection values are coefficients in [-1, 1] or NaN: the first largest one in grid order wins.
    chosen_ij = None if np.isnan(values).all() else divmod(int(np.nanargmax(values)), thr_grid.size)

    evaluated = {ij: correlation(score(*ij)[~sel], q[~sel], method, resampling=resampling)
                 for ij in {chosen_ij, default_ij} if ij}
    rows: list[dict[str, Any]] = []
    for i in range(lam_grid.size):
        for j in range(thr_grid.size):
            res = evaluated.get((i, j))
            held = (res.statistic, res.p_value, res.ci_low, res.ci_high, res.note) if res else (np.nan,) * 4 + ("",)
            rows.append({
                "lambda": float(lam_grid[i]), "threshold": float(thr_grid[j]), "method": method,
                "sign": int(sign), "scope": "pooled", "n_selection": int(n_sel[i, j]), "selection": float(values[i, j]),
                "chosen": (i, j) == chosen_ij, "default": (i, j) == default_ij,
                "n_held_out": int(res.n) if res else int(n_out[i, j]),
                **dict(zip(HELD_OUT_COLUMNS, held)), "split_seed": seed,
            })
    return pd.DataFrame(rows)


def _grid_index(values: np.ndarray, target: float, name: str) -> int:
    hits = np.flatnonzero(np.isclose(values, target))
    if hits.size == 0:
        raise ValueError(f"default {name}={target} is not on the grid {values.tolist()}")
    return int(hits[0])


def _held_out_text(row: pd.Series) -> str:
    n, low, high = int(row["n_held_out"]), row["held_out_ci_low"], row["held_out_ci_high"]
    estimate = format_estimate(row["held_out"], low, high, row["held_out_p"], n, digits=2)
    # "not estimable (n = ...)" already names n.
    return estimate if pd.notna(row["held_out"]) and (pd.isna(low) or pd.isna(high)) else f"{estimate}, n = {n}"


def _flagged(frame: pd.DataFrame, column: str) -> pd.Series | None:
    hit = frame[frame[column].astype(bool)]
    return None if hit.empty else hit.iloc[0]


def _outline(ax: Any, col: int, row: int, linestyle: str, label: str) -> None:
    """Outline one cell: black over a wider white stroke, visible on light and dark cells alike."""
    from matplotlib.patches import Rectangle

    xy = (col - 0.5, row - 0.5)
    ax.add_patch(Rectangle(xy, 1, 1, fill=False, edgecolor="white", linewidth=4.5))
    ax.add_patch(Rectangle(xy, 1, 1, fill=False, edgecolor="black", linewidth=2.2, linestyle=linestyle, label=label))


def plot_sweep_heatmap(frame: pd.DataFrame, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Save a heat map of the selection-half correlations over (threshold, lambda) to a PNG.

    The chosen cell is outlined in solid black, the default cell dashed; the
    chosen cell's held-out correlation (with CI, p and n) is written under the
    title and both held-out values appear in the legend.

    Args:
        frame: output of :func:`correlation_sweep`.
        path: destination ``.png``; parent directories are created.
        title: first title line; defaults to the method and "selection half".

    Returns:
        The path written.
    """
    # A bare Figure renders through the Agg canvas without touching pyplot's
    # global backend or figure registry (safe headless and inside notebooks).
    from matplotlib.figure import Figure

    grid = frame.pivot(index="lambda", columns="threshold", values="selection").sort_index().sort_index(axis=1)
    lam_values = grid.index.to_numpy(dtype=np.float64)
    thr_values = grid.columns.to_numpy(dtype=np.float64)
    data = grid.to_numpy(dtype=np.float64)
    method = str(frame["method"].iloc[0])

    fig = Figure(figsize=(1.1 * len(thr_values) + 2.8, 0.8 * len(lam_values) + 2.2))
    ax = fig.subplots()
    finite = data[np.isfinite(data)]
    bound = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
    image = ax.imshow(data, cmap="RdBu_r", vmin=-bound, vmax=bound, origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{method} ({SCOPE_TEXT}), selection half")
    ax.set_xticks(range(len(thr_values)), [f"{t:g}" for t in thr_values])
    ax.set_yticks(range(len(lam_values)), [f"{lam:g}" for lam in lam_values])
    ax.set_xlabel("threshold")
    ax.set_ylabel("lambda")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            text = "nan" if np.isnan(data[i, j]) else f"{data[i, j]:.2f}"
            dark = np.isfinite(data[i, j]) and abs(data[i, j]) > 0.6 * bound
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")

    chosen, default = _flagged(frame, "chosen"), _flagged(frame, "default")
    subtitle = "no cell defined on the selection half"
    for row, style in ((chosen, "solid"), (default, "--")):
        if row is None:
            continue
        cell = f"lambda={row['lambda']:g}, threshold={row['threshold']:g}"
        i = _grid_index(lam_values, float(row["lambda"]), "lambda")
        j = _grid_index(thr_values, float(row["threshold"]), "threshold")
        what = "chosen on selection half" if style == "solid" else f"default ({cell})"
        _outline(ax, j, i, style, f"{what}; held-out {format_value(row['held_out'], 2)}")
        if style == "solid":
            subtitle = f"chosen ({cell}) on {int(row['n_selection'])} samples; held-out: {_held_out_text(row)}"
    if chosen is not None or default is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize=8, frameon=False)
    ax.set_title(f"{title or f'{method} per sample ({SCOPE_TEXT}), selection half'}\n{subtitle}", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


def render_sweep(frame: pd.DataFrame, name: str = "the score") -> list[str]:
    """Markdown lines stating the split, the chosen cell and its held-out correlation (and the default's).

    Args:
        frame: output of :func:`correlation_sweep` (one sweep).
        name: what was swept, e.g. ``"IMACS_g vs masked PSNR"``.
    """
    if frame.empty:
        return []
    method = f"{frame['method'].iloc[0]}, {SCOPE_TEXT}"
    n_cells = len(frame)
    chosen, default = _flagged(frame, "chosen"), _flagged(frame, "default")
    seed = int(frame["split_seed"].iloc[0])
    if chosen is None:
        text = (f"Sweep of {name} ({method}): no (lambda, threshold) cell has a defined correlation on the "
                f"selection half (split seed {seed}).")
    else:
        text = (f"Sweep of {name} ({method}) over {n_cells} (lambda, threshold) cells. The samples are split in "
                f"two halves (seed {seed}); the best cell is chosen on the selection half "
                f"(n = {int(chosen['n_selection'])}): lambda = {chosen['lambda']:g}, threshold = "
                f"{chosen['threshold']:g}, {format_value(chosen['selection'], 2)} there. On the held-out half it is "
                f"{_held_out_text(chosen)}.")
        if chosen.get("held_out_note"):
            text += f" ({chosen['held_out_note']})"
    if int(frame["sign"].iloc[0]) < 0:
        text += (" The quality is lower-is-better and enters negated: a positive value means the score tracks "
                 "lower (better) values, and the best cell is the one that does so most.")
    if default is not None:
        text += (f" The default (lambda = {default['lambda']:g}, threshold = {default['threshold']:g}) on the "
                 f"held-out half: {_held_out_text(default)}.")
    return [text, ""]
