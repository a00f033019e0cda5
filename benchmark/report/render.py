"""Markdown from the report's frames; formatting only, no computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.format import format_p, format_value as fmt
from benchmark.registry import metric_direction, metric_label
from benchmark.store import write_atomic


ARROWS = {"higher": " ↑", "lower": " ↓"}  # after a metric's label: its better direction


def _cell(row: pd.Series, metric: str) -> str:
    mean = row.get(metric, np.nan)
    if pd.isna(mean):
        return "n/a"
    text = fmt(mean)
    if f"{metric}_ci_low" in row and not pd.isna(row[f"{metric}_ci_low"]):
        text += f" [{fmt(row[f'{metric}_ci_low'])}, {fmt(row[f'{metric}_ci_high'])}]"
    change = row.get(f"{metric}_change", np.nan)
    if not pd.isna(change):
        text += f" ({change:+.3f})"
    return text


def table(frame: pd.DataFrame, metrics: list[str], set_metrics: list[str]) -> list[str]:
    """The leaderboard rows: model, metrics (mean [CI] (change)), set metrics, n, failures; the models under test
    first, then a separator row and the baselines (random-init copies), each group in the frame's order."""
    head = ["model"] + [metric_label(m) + ARROWS.get(metric_direction(m), "") for m in metrics + set_metrics]
    head += ["n", "failures"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tested, baselines = frame[~frame.baseline.astype(bool)], frame[frame.baseline.astype(bool)]
    lines += [_row(r, metrics, set_metrics) for _, r in tested.iterrows()]
    if not baselines.empty:
        lines.append("| *baselines (random-init copies):* |" + " |" * (len(head) - 1))
        lines += [_row(r, metrics, set_metrics) for _, r in baselines.iterrows()]
    return lines


def _row(r: pd.Series, metrics: list[str], set_metrics: list[str]) -> str:
    name = f"{r.model} (baseline)" if r.baseline else r.model
    cells = [_cell(r, m) for m in metrics]
    cells += ["unavailable¹" if pd.isna(r.get(m, np.nan)) else fmt(r[m]) for m in set_metrics]
    counts = ((r.failed_jobs, "job(s)"), (r.failed_samples, "sample(s)"))
    fails = ", ".join(f"{n} {noun}" for n, noun in counts if n)
    return "| " + " | ".join([name] + cells + [str(r.n), fails or "0"]) + " |"


def failures_section(failures: pd.DataFrame) -> list[str]:
    if failures.empty:
        return []
    lines = ["## Failures", ""]
    jobs = failures[failures.kind != "sample"]
    if not jobs.empty:
        lines += ["| model | what failed | where | reason |", "|---|---|---|---|"]
        for (model, kind, error), g in jobs.groupby(["model", "kind", "error"], sort=False):
            what = ("task entry (no job planned)" if kind == "task"
                    else f"{len(g)} job(s), {int(g.n_samples.sum())} samples")
            where = ", ".join(f"`{f}`" for f in g.file.unique()[:3]) + (" ..." if g.file.nunique() > 3 else "")
            lines.append(f"| {model} | {what} | {where} | {error} |")
        lines.append("")
    samples = failures[failures.kind == "sample"]
    if not samples.empty:
        lines += ["Samples left out (each named with its file; the other samples are scored):", "",
                  "| model | sample | file | error |", "|---|---|---|---|"]
        lines += [f"| {r.model} | {r.sample_id} | `{r.file}` | {r.error} |" for r in samples.itertuples()] + [""]
    return lines


def set_metric_notes(sets: pd.DataFrame) -> list[str]:
    if sets.empty:
        return []
    lines = []
    labels = sorted({lbl for lbl in sets["label"] if lbl})
    if labels:
        lines.append("FID / KID: " + "; ".join(labels) + ", against the task's reference set (the real images of "
                     "the same samples); n per model in the CSV.")
    notes = sorted({n for n in sets["note"] if n})
    lines += [f"¹ {n}" for n in notes]
    return lines + [""] if lines else []


def undefined_notes(agg: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Why some scores are undefined, per metric and note, naming the models (``agg``: one task's model means)."""
    noted = agg[agg.metric.isin(metrics) & agg.note.fillna("").astype(bool)]
    lines = [f"- {metric_label(metric)}, {', '.join(sorted(g.model))}: {note}"
             for (metric, note), g in noted.groupby(["metric", "note"], sort=True)]
    return lines + [""] if lines else []


def write_markdown(path: Path, lines: list[str]) -> Path:
    """``lines`` as a Markdown file ending in a newline, atomically."""
    return write_atomic(path, "\n".join(lines) + "\n")


def link(path: Path, base: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(base).as_posix()})"


def overview(header: list[str], rows: list[dict], changes: pd.DataFrame, confidence: float,
             has_methods: bool) -> list[str]:
    """The leaderboards' index: the flagged changes since the last comparable run (``changes``: the frame of
    :func:`benchmark.report.changes.compare`, CIs at ``confidence``), then one row per task."""
    level = f"{confidence:.0%}"
    lines = ["# Leaderboards", ""] + header + ["", "## Since the last comparable run", ""]
    if changes.empty:
        lines.append("No comparison: no model under test has other weights stored with the same samples and "
                     "generation settings.")
    else:
        models = len(changes[["task", "model"]].drop_duplicates())
        lines.append(f"{len(changes)} comparison(s) of {models} model(s) with their previous weights, paired per "
                     f"sample; flagged when the {level} CI of the change excludes 0 and the change reaches the "
                     "metric's minimum effect (`scoring.regression`).")
        flagged = changes[changes.flagged != ""].sort_values(["flagged", "task", "model", "metric"],
                                                             ascending=[False, True, True, True])
        if flagged.empty:
            lines += ["", "No significant change."]
        else:
            lines += ["", f"| | task | model | metric | change [{level} CI] | p | n | runs (old → new) |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| **{r.flagged}** | {r.task} | {r.model} | {metric_label(r.metric)}"
                      f"{ARROWS.get(r.direction, '')} | {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | "
                      f"{format_p(r.p_value)} | {r.n} | {r.old_run} → {r.new_run} |" for r in flagged.itertuples()]
    lines += ["", "## Tasks", "", "| task | models | samples | failures | best IMACS_g | page | trend |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        trend = f"[trend.png]({r['trend']})" if r.get("trend") else ""
        lines.append(f"| {r['task']} | {r['models']} | {r['samples']} | {r['failures']} | {r['best']} | "
                     f"[{r['task']}.md]({r['task']}.md) | {trend} |")
    if any(r.get("trend") for r in rows):
        lines += ["", "Trend: IMACS_g and the primary quality metric of each model under test over the states in "
                  "`history.csv`, with 95% CIs."]
    if has_methods:
        lines += ["", "Attribution methods compared on the same captures: [methods.md](methods.md)."]
    lines += ["", "Frames behind these tables: `results/samples.csv` (one row per sample x metric), `models.csv`, "
              "`correlations.csv`, `confounds.csv`, `sweep.csv`, `failures.csv`, `changes.csv` (every comparison "
              "since the last comparable run), `regressions.json` in the run's output folder."]
    return lines
