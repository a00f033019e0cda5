"""The one-pass section of a task page: how far one-pass IMACS agrees with generation-time IMACS, and what each
costs (``docs/one_pass.md``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.correlation import METHODS
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import render_within_between, within_between
from benchmark.config import RunConfig
from benchmark.defaults import IMACS_SCORES
from benchmark.report import memo
from benchmark.report.store_view import StoreView, sample_frame

SUFFIX = "_1p"
LABELS = {"imacs_g_1p": "IMACS_g one-pass", "imacs_r_1p": "IMACS_r one-pass"}


def agreement(cfg: RunConfig, view: StoreView, task: str, generation: pd.DataFrame, quality: str | None,
              resampling: Resampling) -> pd.DataFrame:
    """Spearman and Pearson correlations of one-pass IMACS with generation-time IMACS (and with the primary quality
    metric, negated when lower is better): pooled, within each model, combined, between models; the frame of
    :func:`benchmark.analysis.validity.within_between`. ``generation``: the task's generation-time sample frame
    (baselines out)."""
    models = set(generation.model)
    one = sample_frame(view, [sm for sm in view.one_pass if sm.task == task and sm.model in models])
    one = one[one.metric.isin(IMACS_SCORES)].assign(metric=lambda f: f.metric + SUFFIX)
    if one.empty:
        return pd.DataFrame()
    both = pd.concat([generation, one], ignore_index=True)
    ys = [*IMACS_SCORES] + ([quality] if quality else [])
    xs, methods = tuple(s + SUFFIX for s in IMACS_SCORES), METHODS
    frame = memo.cached(cfg.out_dir / "results" / "cache", f"{task}-one-pass",
                        memo.digest(both, xs, ys, methods, resampling),
                        within_between, both, xs, ys, methods, resampling=resampling)
    keep = frame.y.isin([quality]) | (frame.x.str[: -len(SUFFIX)] == frame.y)
    return frame[keep].reset_index(drop=True)


def cost(view: StoreView, task: str) -> pd.DataFrame:
    """Per model and protocol: model evaluations per sample and seconds per sample (generate + capture, or the
    one-pass calls; loading and storing excluded), from the stored records."""
    rows = []
    for sm in view.models + view.one_pass:
        if sm.task != task or not sm.records:
            continue
        first, n = sm.records[0], sum(r.n_samples for r in sm.records)
        rows.append({"model": sm.model, "protocol": sm.protocol,
                     "evaluations": np.nan if first.model_evaluations_per_sample is None
                     else first.model_evaluations_per_sample,
                     "seconds_per_sample": sum(r.timings["generate_capture"] for r in sm.records) / max(n, 1),
                     "device": first.device})
    frame = pd.DataFrame(rows)
    if frame.empty or "one_pass" not in set(frame.protocol):
        return pd.DataFrame()
    return frame[frame.model.isin(set(frame[frame.protocol == "one_pass"].model))]


def section(agree: pd.DataFrame, costs: pd.DataFrame, labels: dict[str, str], timesteps: str) -> list[str]:
    if agree.empty and costs.empty:
        return []
    lines = [f"## One-pass attribution ({timesteps})", "",
             "One conditional model call per timestep on the noised ground truth, captured with the same processors "
             "and scored like generation. Does it agree with generation-time IMACS, and does it rank the models as "
             "generation-time IMACS and the quality metric do (between-models rows)?", ""]
    lines += render_within_between(agree, {**labels, **LABELS})
    if not costs.empty:
        lines += ["Cost per sample (model evaluations: a CFG pair counts two; seconds: generation or one-pass calls "
                  "with capture, loading and storing excluded, on the device named):", "",
                  "| model | generation: evaluations | generation: s/sample | one-pass: evaluations | "
                  "one-pass: s/sample | ratio (s) |", "|---|---|---|---|---|---|"]
        for model, g in costs.groupby("model", sort=False):
            gen, one = g[g.protocol == "generation"], g[g.protocol == "one_pass"]
            if gen.empty or one.empty:
                continue
            ratio = gen.seconds_per_sample.iloc[0] / max(one.seconds_per_sample.iloc[0], 1e-12)
            lines.append(f"| {model} | {int(gen.evaluations.iloc[0])} | {gen.seconds_per_sample.iloc[0]:.3f} | "
                         f"{int(one.evaluations.iloc[0])} | {one.seconds_per_sample.iloc[0]:.3f} | {ratio:.1f}x |")
        lines.append("")
    return lines
