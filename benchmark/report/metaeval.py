"""The "Which score tracks quality?" section of a task page: every attribution score the store holds for the task,
and trivial baselines, judged against the task's primary quality metric as metric shared tasks judge metrics
(:mod:`benchmark.analysis.metaeval`; ``docs/metaeval.md``).

Candidates, each from stored data only (a candidate the store lacks for a task is left out and named):

* IMACS_g and IMACS_r (every sample), the reference being IMACS_g;
* IMACS_g of the one-pass protocol (every sample with a one-pass capture);
* I2AM top-k heads, supervised and label-free, and the ConceptAttention-style IMACS_g (joint-attention
  transformers): the attribution-method frame (``methods_samples.csv``), on the evaluation half of each model's
  samples (heads ranked on the other half);
* IMACS_g at the lambda x threshold cell chosen on the sweep's selection half, on the held-out half;
* baselines: -area(x_g) (a smaller region to fill is easier; the sign is fixed before looking), and the IMACS_g
  of the model's random-init copy on the same sample.

Every comparison with IMACS_g is on the samples the candidate has (IMACS_g restricted to them).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.correlation import correlation
from benchmark.analysis.format import MINUS, format_ci, format_estimate, format_p, format_value, oriented_label
from benchmark.analysis.metaeval import (EPSILON, paired_difference, power_between, power_within,
                                          system_accuracy)
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.sweep import split_halves
from benchmark.analysis.validity import orientation, paired_wide, within_combined
from benchmark.config import RunConfig
from benchmark.defaults import IMACS_SCORES
from benchmark.registry import METHODS, metric_label
from benchmark.report import memo
from benchmark.report.figures_page import Figures
from benchmark.report.store_view import StoreView, sample_frame, sweep_terms
from benchmark.store import write_atomic

REFERENCE = "IMACS_g"
METHOD = "spearman"
EFFECTS_WITHIN = (0.2, 0.3)
EFFECT_BETWEEN = 0.8
ALPHA, POWER = 0.05, 0.8
N_RESAMPLES = 1000  # swap patterns of the paired permutation test (Monte Carlo beyond 2^12)
N_SIMS = 400  # simulations per power evaluation
TOP_K = re.compile(r"top-(\d+) heads")  # the k of a top-k method label
COLUMNS = ["candidate", "kind", "samples", "n", "n_models", "within", "within_p", "within_ci_low", "within_ci_high",
           "within_note", "between", "between_p", "between_n", "between_note", "diff", "diff_ref", "diff_p",
           "diff_ci_low", "diff_ci_high", "diff_p_method", "accuracy", "accuracy_p", "accuracy_ci_low",
           "accuracy_ci_high", "score_ties", "quality_ties", "note"]


def method_samples(res_dir: Path, written: bool) -> pd.DataFrame:
    """The attribution-method frame the report just wrote (``methods_samples.csv``); empty when it wrote none."""
    path = Path(res_dir) / "methods_samples.csv"
    if not written or not path.is_file():
        return pd.DataFrame(columns=["task", "model", "method", "sample_id", "metric", "value"])
    return pd.read_csv(path, dtype={"sample_id": str, "model": str})


def _random_init_pairs(frame: pd.DataFrame, tested: list[str], baselines: set[str]) -> dict[str, str]:
    """Model under test -> its random-init copy: the baseline of the same adapter (the first by name)."""
    adapter = frame.drop_duplicates("model").set_index("model")["adapter"]
    pairs = {}
    for model in tested:
        same = sorted(b for b in baselines if b in adapter and adapter[b] == adapter.get(model))
        if same:
            pairs[model] = same[0]
    return pairs


def candidates(cfg: RunConfig, view: StoreView, task: str, frame: pd.DataFrame, quality: str,
               methods: pd.DataFrame, sweep: pd.DataFrame) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """The per-sample data of every candidate of one task.

    Args:
        frame: the task's sample frame, baselines included (:func:`benchmark.report.store_view.sample_frame`).
        quality: the primary quality metric.
        methods: the attribution-method frame (:func:`method_samples`), any tasks.
        sweep: the task's sweep frame (:func:`benchmark.analysis.sweep.correlation_sweep` rows with ``side``).

    Returns:
        (wide: one row per (model, sample) of the models under test with columns ``model, sample_id, imacs_g,
        quality`` (oriented) and one column per candidate; the candidates' ``{"name", "kind", "samples",
        "note"}`` in table order; notes on the candidates left out).
    """
    tested = sorted(m for m in frame.model.unique() if m not in view.baselines)
    tf = frame[frame.model.isin(tested)]
    metrics = [*IMACS_SCORES, quality, "area_g"]
    wide = paired_wide(tf, metrics).drop(columns="task")
    wide["quality"] = orientation(quality) * wide.pop(quality)
    keys = ["model", "sample_id"]
    specs, missing = [], []

    def add(name: str, kind: str, samples: str, values: pd.DataFrame | None, why_absent: str, note: str = ""):
        nonlocal wide
        if values is None or values.empty or not np.isfinite(values["value"]).any():
            missing.append(f"{name}: {why_absent}")
            return
        wide = wide.merge(values[keys + ["value"]].rename(columns={"value": name}), on=keys, how="left")
        specs.append({"name": name, "kind": kind, "samples": samples, "note": note})

    def metric_values(f: pd.DataFrame, metric: str) -> pd.DataFrame:
        return f.loc[f.metric == metric, keys + ["value"]]

    add(REFERENCE, "reference", "all", metric_values(tf, "imacs_g"), "no IMACS_g value stored")
    add("IMACS_r", "alternative", "all", metric_values(tf, "imacs_r"), "no reference-side score stored")
    one = [sm for sm in view.one_pass if sm.task == task and sm.model in tested and sm.records]
    add("IMACS_g one-pass", "alternative", "all with a one-pass capture",
        metric_values(sample_frame(view, one), "imacs_g") if one else None, "no one-pass capture stored")
    mt = methods[(methods.task == task) & methods.model.isin(tested) & (methods.metric == "imacs_g")]
    for score in ("supervised", "label-free"):
        rows = mt[mt.method.str.fullmatch(rf"I2AM top-\d+ heads \({score}\)")]
        ks = ", ".join(f"{m}: {TOP_K.search(meth).group(1)}"
                       for m, meth in rows.drop_duplicates("model")[["model", "method"]].itertuples(index=False))
        add(f"top-k heads ({score})", "alternative", "evaluation half", rows, "no head selection stored",
            f"k = {ks}" if ks else "")
    concept = mt[mt.method == METHODS.label("concept")]
    add("ConceptAttention-style IMACS_g", "alternative", "evaluation half", concept,
        "no ConceptAttention map stored (joint-attention transformers only)",
        f"models: {', '.join(sorted(concept.model.unique()))}" if not concept.empty else "")
    add(*_sweep_candidate(cfg, view, task, tested, sweep))
    if wide["area_g"].notna().any():
        add(f"{MINUS}area(x_g)", "baseline", "all", wide[keys].assign(value=-wide["area_g"]), "")
    else:
        missing.append(f"{MINUS}area(x_g): no region area stored")
    pairs = _random_init_pairs(frame, tested, view.baselines)
    base = frame[frame.metric == "imacs_g"].set_index(keys)["value"]
    copies = wide[keys].assign(value=[base.get((pairs.get(m), s), np.nan)
                                      for m, s in wide[keys].itertuples(index=False)])
    add("random-init copy's IMACS_g", "baseline", "all, same sample", copies if pairs else None,
        "no random-init copy stored", "; ".join(f"{b} for {', '.join(sorted(m for m in pairs if pairs[m] == b))}"
                                                for b in sorted(set(pairs.values()))))
    return wide, specs, missing


def _sweep_candidate(cfg: RunConfig, view: StoreView, task: str, tested: list[str], sweep: pd.DataFrame) -> tuple:
    """``add`` arguments of IMACS_g at the cell chosen on the selection half, on the held-out half."""
    name = "IMACS_g at the chosen sweep cell"
    chosen = sweep[(sweep.side == "g") & sweep.chosen.astype(bool)] if not sweep.empty else sweep
    terms = sweep_terms(view, task, tested).get("g") if not chosen.empty else None
    if terms is None:
        return name, "alternative", "held-out half", None, "no IMACS_g sweep on this task"
    row = chosen.iloc[0]
    j = int(np.flatnonzero(np.isclose(terms["thresholds"], row["threshold"]))[0])
    held = ~split_halves(terms["model"], seed=int(row["split_seed"]), units=terms["sample_id"])
    values = pd.DataFrame({"model": terms["model"][held], "sample_id": terms["sample_id"][held],
                           "value": terms["a"][held, j] - row["lambda"] * terms["b"][held, j]})
    default = bool(row["default"])
    note = (f"lambda {row['lambda']:g}, threshold {row['threshold']:g}"
            + (" (the default cell: IMACS_g itself)" if default else ""))
    return name, "alternative", "held-out half", values, "", note


def _statistics(wide: pd.DataFrame, specs: list[dict], resampling: Resampling) -> pd.DataFrame:
    """One row per candidate (:data:`COLUMNS`); the paired differences draw :data:`N_RESAMPLES` swap patterns."""
    rows = []
    swaps = replace(resampling, n_permutations=N_RESAMPLES)
    for spec in specs:
        name = spec["name"]
        sub = wide[wide[name].notna()]
        x, ref, q = (sub[c].to_numpy(float) for c in (name, REFERENCE, "quality"))
        groups = sub["model"].to_numpy(str)
        within = within_combined(x, q, groups, METHOD, resampling=resampling)
        means = sub.groupby("model", sort=True)[[name, "quality"]].mean()
        between = correlation(means[name], means["quality"], METHOD, level="model", resampling=resampling)
        acc = system_accuracy(x, q, groups, units=sub["sample_id"].to_numpy(str), resampling=resampling)
        row = {"candidate": name, "kind": spec["kind"], "samples": spec["samples"], "n": within.n,
               "n_models": int(means.dropna().shape[0]), "within": within.statistic, "within_p": within.p_value,
               "within_ci_low": within.ci_low, "within_ci_high": within.ci_high, "within_note": within.note,
               "between": between.statistic, "between_p": between.p_value, "between_n": between.n,
               "between_note": f"between: {between.note}" if np.isnan(between.statistic) else "",
               "accuracy": acc.accuracy, "accuracy_p": acc.p_value, "accuracy_ci_low": acc.ci_low,
               "accuracy_ci_high": acc.ci_high, "score_ties": acc.score_ties, "quality_ties": acc.quality_ties,
               "note": spec["note"]}
        if spec["kind"] != "reference":
            d = paired_difference(x, ref, q, groups, METHOD, resampling=swaps)
            row.update(diff=d.difference, diff_ref=d.r_b, diff_p=d.p_value, diff_ci_low=d.ci_low,
                       diff_ci_high=d.ci_high, diff_p_method=d.p_method)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _power(wide: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Samples per model for each within-model effect and models for the between-model effect, on IMACS_g."""
    x, q, g = wide[REFERENCE].to_numpy(float), wide["quality"].to_numpy(float), wide["model"].to_numpy(str)
    rows = []
    for effect in EFFECTS_WITHIN:
        res = power_within(x, q, g, effect, alpha=ALPHA, target=POWER, n_sims=N_SIMS, seed=seed)
        rows.append({"scope": "within", **res.to_dict()})
    res = power_between(x, q, g, EFFECT_BETWEEN, alpha=ALPHA, target=POWER, n_sims=N_SIMS, seed=seed)
    rows.append({"scope": "between", **res.to_dict()})
    frame = pd.DataFrame(rows)
    frame["largest"] = frame["tried"].map(lambda d: max(d, default=np.nan))
    frame["tried"] = frame["tried"].map(lambda d: "; ".join(f"{k}: {v:.3f}" for k, v in d.items()))
    return frame


def analyse(cfg: RunConfig, view: StoreView, task: str, frame: pd.DataFrame, quality: list[str],
            methods: pd.DataFrame, sweep: pd.DataFrame, resampling: Resampling, figures: Figures) -> dict:
    """The section's frames for one task (cached by their inputs) and its forest plot (to ``figures``).

    Returns ``{"candidates": frame (:data:`COLUMNS`), "power": frame, "missing": [notes], "quality": name,
    "figure": path or None}``; empty frames when the task has no quality metric or no IMACS_g.
    """
    out = {"candidates": pd.DataFrame(columns=COLUMNS), "power": pd.DataFrame(), "missing": [],
           "quality": quality[0] if quality else None, "figure": None}
    if not quality or not (frame.metric == "imacs_g").any():
        return out
    wide, specs, out["missing"] = candidates(cfg, view, task, frame, quality[0], methods, sweep)
    if not any(spec["kind"] == "reference" for spec in specs):
        return out
    cache = cfg.out_dir / "results" / "cache"
    key = memo.digest(wide, specs, resampling)
    out["candidates"] = memo.cached(cache, f"{task}-metaeval", key, _statistics, wide, specs, resampling)
    out["power"] = memo.cached(cache, f"{task}-power", memo.digest(wide[["model", REFERENCE, "quality"]],
                                                                   resampling.seed),
                               _power, wide[["model", REFERENCE, "quality"]], resampling.seed)
    path = figures.fig_dir / task / "candidates.png"
    q_name = oriented_label(quality[0], orientation(quality[0]), {quality[0]: metric_label(quality[0])})
    figures.schedule("benchmark.report.metaeval:plot_forest",
                     (out["candidates"], path, f"{task}: Spearman with {q_name}"), path, memo.digest(out["candidates"]))
    out["figure"] = path
    return out


def plot_forest(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Forest plot: per candidate, its combined within-model correlation with the 95% CI (filled) and its
    between-model correlation (hollow); a dashed line at IMACS_g's within-model value."""
    from matplotlib.figure import Figure

    from benchmark.scoring.figures import png_bytes  # heavy: matplotlib, torch

    rows = frame.iloc[::-1].reset_index(drop=True)
    fig = Figure(figsize=(6.8, 0.42 * len(rows) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    has_ci = rows.within_ci_low.notna() & rows.within_ci_high.notna()
    ax.errorbar(rows.within[has_ci], y[has_ci], xerr=[rows.within[has_ci] - rows.within_ci_low[has_ci],
                                                      rows.within_ci_high[has_ci] - rows.within[has_ci]],
                fmt="o", color="C0", capsize=3, label="within models (combined), 95% CI")
    ax.plot(rows.within[~has_ci], y[~has_ci], "o", color="C0")
    ax.plot(rows.between, y, "D", mfc="none", color="C3", label="between models (no CI: few models)")
    ref = frame.loc[frame.kind == "reference", "within"]
    if not ref.empty and np.isfinite(ref.iloc[0]):
        ax.axvline(ref.iloc[0], color="C0", linestyle="--", linewidth=0.8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y, [f"{c} ({s})" for c, s in zip(rows.candidate, rows.samples)], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman correlation with quality")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    write_atomic(Path(path), png_bytes(fig, 110))
    return Path(path)


def section(result: dict, lb_dir: Path) -> list[str]:
    """Markdown of the section (empty when there is nothing to show)."""
    cands, power = result["candidates"], result["power"]
    if cands.empty:
        return []
    q = result["quality"]
    q_name = oriented_label(q, orientation(q), {q: metric_label(q)})
    lines = ["## Which score tracks quality?", "",
             f"Each candidate score against {q_name} (Spearman; random-init baselines are not models under test). "
             "*within*: the combined within-model correlation of the section above; *between*: over the model "
             "means. **Δ vs IMACS_g**: within(candidate) − within(IMACS_g) on the candidate's samples (IMACS_g's "
             "value there in parentheses); p from a paired permutation test that swaps the two scores of each "
             f"sample ({N_RESAMPLES} swap patterns, within-model standard scores, as mt-metrics-eval's "
             "PermutationSigDiff), CI from a bootstrap of the samples within each model. *pairwise accuracy*: the "
             f"share of model pairs that the score's means order as the quality's means do (means within "
             f"{EPSILON:g} tie, and a tie agrees only with a tie); CI: bootstrap of the inputs (the same ones drawn "
             "for every model), model means recomputed; p: one-sided permutation of the models' pairing.", "",
             "| candidate | samples | n (models) | within: r [95% CI], p | between: r, p | Δ vs IMACS_g [95% CI], p "
             "| pairwise accuracy [95% CI], p | note |", "|---|---|---|---|---|---|---|---|"]
    for r in cands.itertuples(index=False):
        within = format_estimate(r.within, r.within_ci_low, r.within_ci_high, r.within_p, r.n)
        between = "n/a" if pd.isna(r.between) else f"{format_value(r.between)}, p {format_p(r.between_p)}"
        diff = "—" if r.kind == "reference" else (
            "n/a" if pd.isna(r.diff) else f"{r.diff:+.3f} {format_ci(r.diff_ci_low, r.diff_ci_high, n=r.n)}, "
                                          f"p {format_p(r.diff_p)} ({format_value(r.diff_ref)})")
        ties = f"; ties: {r.score_ties} score, {r.quality_ties} quality" if r.score_ties or r.quality_ties else ""
        acc = "n/a" if pd.isna(r.accuracy) else (f"{format_value(r.accuracy, 2)} "
                                                 f"{format_ci(r.accuracy_ci_low, r.accuracy_ci_high, 2, r.n_models)}, "
                                                 f"p {format_p(r.accuracy_p)}{ties}")
        name = f"*{r.candidate}*" if r.kind == "baseline" else r.candidate
        notes = "; ".join(filter(None, [r.note, r.within_note, r.between_note]))
        lines.append(f"| {name} | {r.samples} | {r.n} ({r.n_models}) | {within} | {between} | {diff} | {acc} | "
                     f"{notes} |")
    lines.append("")
    lines += [f"- not available for this task: {m}" for m in result["missing"]]
    lines += [""] if result["missing"] else []
    if not power.empty:
        lines += [_power_line(power), ""]
    if result.get("figure") is not None:
        lines += [f"![candidates]({Path(result['figure']).relative_to(lb_dir).as_posix()})", ""]
    return lines


def _needed(r, unit: str) -> str:
    """``<n> <unit> (power p ± se)``, ``more than <largest tried>`` when no size on the grid reached the target,
    ``n/a (<why>)`` when nothing could be simulated."""
    if pd.isna(r.power):
        return f"n/a ({r.design})"
    n = f"more than {int(r.largest)}" if pd.isna(r.needed) else f"{int(r.needed)}"
    return f"{n} {unit} (power {r.power:.2f} ± {r.power_se:.2f})"


def _power_line(power: pd.DataFrame) -> str:
    """The task's "n needed" sentence."""
    within = power[power.scope == "within"]
    between = power[power.scope == "between"].iloc[0]
    parts = [f"r = {r.effect:g}: {_needed(r, 'samples per model')}" for r in within.itertuples(index=False)]
    first = within.iloc[0]
    return (f"**n needed** (IMACS_g; α = {ALPHA:g} two-sided, {POWER:.0%} power, {int(first.n_sims)} simulations "
            f"per size from this task's data, ± Monte-Carlo SE): within-model Spearman with "
            f"{first.design.split(',')[0]}: " + "; ".join(parts) + f". Between-model Spearman {between.effect:g} of "
            f"the true model means ({between.design}): {_needed(between, 'models')}.")
