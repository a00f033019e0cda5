"""The attribution-method leaderboard page (``methods.md``): frames from :mod:`benchmark.methods.compare`,
figures from :mod:`benchmark.report.figures`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.format import format_value as fmt
from benchmark.analysis.resampling import Resampling
from benchmark.config import RunConfig
from benchmark.methods.compare import compare_methods, paired_differences, summarise
from benchmark.registry import METHODS, metric_label
from benchmark.report import memo
from benchmark.report.figures_page import Figures
from benchmark.report.render import write_markdown
from benchmark.report.store_view import StoreView
from benchmark.report.tables import write_csv
from benchmark.results.sample_maps import SampleMaps

# Samples per (task, model) the methods leaderboard scores (its first, by dataset index): every sample's maps are
# loaded and scored by each method on both sides (~20-60 ms a sample on a CPU), so at a nightly's thousands of
# samples per model it would take minutes per model; its CIs are per model, so a fixed count bounds the cost.
METHOD_SAMPLES = 64


def _ci_cells(g: pd.DataFrame, metrics: list[str]) -> list[str]:
    """'mean [low, high]' per metric from a summary frame (columns metric, mean, ci_low, ci_high); n/a if absent."""
    cells = []
    for m in metrics:
        r = g[g.metric == m]
        cells.append("n/a" if r.empty or np.isnan(r.iloc[0]["mean"]) else
                     f"{fmt(r.iloc[0]['mean'])} [{fmt(r.iloc[0]['ci_low'])}, {fmt(r.iloc[0]['ci_high'])}]")
    return cells


def _table(frame: pd.DataFrame, metrics: list[str], heads: list[str]) -> list[str]:
    """Markdown rows ``| model | method | <metric cells> | n |`` of a summary frame, one per (model, method)."""
    lines = ["| model | method | " + " | ".join(heads) + " | n |", "|---|---|" + "---|" * (len(metrics) + 1)]
    for (model, method), g in frame.groupby(["model", "method"], sort=False):
        lines.append(f"| {model} | {method} | " + " | ".join(_ci_cells(g, metrics)) + f" | {int(g['n'].max())} |")
    return lines + [""]


@dataclass
class MethodScores:
    """The method leaderboard's per-sample scores: read from the report's cache, or being computed per model in the
    report's worker processes while the report goes on (:func:`start_methods`); :meth:`result` waits for them."""

    samples: dict  # (task, model) -> the sample folders scored
    key: str  # the memo key of the scores (samples, baselines, scoring, methods and their code)
    entry: Path  # the memo entry
    value: tuple | None = None  # (per-sample frame, examples) once known
    futures: list = field(default_factory=list)  # per (task, model), in sorted order: (key, future)

    def result(self) -> tuple[pd.DataFrame, dict]:
        """(per-sample frame, example maps), as :func:`~benchmark.methods.compare.compare_methods` returns them for
        all models at once (its rows in sorted (task, model) order)."""
        if self.value is None:
            parts = [future.result() for _, future in self.futures]
            frames = [frame for frame, _ in parts if not frame.empty]
            examples = {k: v for _, ex in parts for k, v in ex.items()}
            frame = pd.concat(frames, ignore_index=True) if frames else compare_methods({}, set())[0]
            self.value = (frame, examples)
            memo.write_entry(self.entry, self.value)
        return self.value


def start_methods(cfg: RunConfig, view: StoreView, res_dir: Path, figures: Figures) -> MethodScores:
    """Start scoring every method on each model's first :data:`METHOD_SAMPLES` samples, one model per task in the
    report's workers (:meth:`Figures.submit`), unless the cache holds the scores of the same inputs."""
    samples = {(sm.task, sm.model): sm.sample_dirs[:METHOD_SAMPLES] for sm in view.models if sm.sample_dirs}
    others: dict = {}
    for sm in view.one_pass:
        if sm.sample_dirs:
            label = f"{METHODS.label('one_pass')} t=" + ",".join(str(t) for t in sorted(sm.records[0].timesteps))
            others.setdefault((sm.task, sm.model), {})[label] = {d.name: d for d in sm.sample_dirs}
    lam, thr = cfg.scoring.lam, cfg.scoring.threshold

    def rel(path: Path) -> str:  # keys that do not depend on where the run folder lives
        return path.relative_to(cfg.out_dir).as_posix()

    key = memo.digest(sorted((k, [rel(d) for d in v]) for k, v in samples.items()), sorted(view.baselines),
                      (lam, thr),
                      sorted((k, sorted((lbl, sorted(rel(p) for p in v.values())) for lbl, v in d.items()))
                             for k, d in others.items()),
                      [(e.name, e.label, memo.code_digest(e.target.partition(":")[0] if isinstance(e.target, str)
                                                          else e.target.__module__)) for e in METHODS.ordered()])
    scores = MethodScores(samples, key, memo.entry(res_dir / "cache", "methods", key, compare_methods))
    scores.value = memo.read_entry(scores.entry)
    if scores.value is None:
        scores.futures = [(k, figures.submit(compare_methods, {k: dirs}, view.baselines, lam, thr,
                                             other_captures={k: others[k]} if k in others else {}))
                          for k, dirs in sorted(samples.items())]
    return scores


def method_leaderboard(cfg: RunConfig, view: StoreView, scores: MethodScores, lb_dir: Path, res_dir: Path,
                       header: list[str], figures: Figures, resampling: Resampling) -> bool:
    """Write ``methods.{csv,md}`` and ``methods_paired.csv`` from ``scores`` (:func:`start_methods`); False when no
    model has enough samples. Its figures go to ``figures``."""
    samples, key = scores.samples, scores.key
    most = max((len(sm.sample_dirs) for sm in view.models), default=0)
    per_sample, examples = scores.result()
    if per_sample.empty:
        return False
    write_csv(per_sample, res_dir / "methods_samples.csv")
    summary = summarise(per_sample, resampling)
    wide = summary.pivot_table(index=["task", "model", "method"], columns="metric",
                               values=["mean", "ci_low", "ci_high"])
    wide.columns = [f"{m}_{stat}" if stat != "mean" else m for stat, m in wide.columns]
    write_csv(wide.reset_index(), lb_dir / "methods.csv")
    paired = paired_differences(per_sample, resampling)
    write_csv(paired, lb_dir / "methods_paired.csv")
    fig_dir = figures.fig_dir
    lines = ["# Attribution methods", ""] + header + ["",
             "Maps on the evaluation half of each model's samples (heads ranked on the other half): generated side "
             "against x_g, reference side against x_r (eq. 17 maps; needs a reference mask and patch tokens). "
             "Cells: mean [bootstrap 95% CI]. Baselines: a uniform map; the maps of a randomly initialised copy of "
             "the model. The ConceptAttention-style maps (joint-attention transformers only) weight the reference "
             "tokens by the reference mask; I2AM needs no mask.", ""]
    if most > METHOD_SAMPLES:
        lines += [f"Each model's first {METHOD_SAMPLES} samples (of up to {most}) enter this page: every method is "
                  "scored on every map of a sample, which at thousands of samples per model would take minutes per "
                  "model.", ""]
    for task, tsum in summary.groupby("task"):
        lines += [f"## {task}", ""]
        for side, title in (("g", "Generated side"), ("r", "Reference side")):
            metrics = [f"{k}_{side}" for k in ("imacs", "miou", "ap", "pixel_acc")]
            if set(metrics) & set(tsum.metric):
                lines += [f"### {title}", ""] + _table(tsum[tsum.metric.isin(metrics)], metrics,
                                                       [f"{metric_label(m)} ↑" for m in metrics])
        tp = paired[paired.task == task]
        if not tp.empty:
            metrics = [m for m in ("imacs_g", "miou_g", "imacs_r", "miou_r") if m in set(tp.metric)]
            lines += ["### Paired differences against I2AM all heads (same samples)", "",
                      "Mean of (method - I2AM all heads) per sample [bootstrap 95% CI]; a CI above 0 means the "
                      "method wins on this model.", ""]
            lines += _table(tp, metrics, [f"Δ {metric_label(m)}" for m in metrics])
        for (t, model), maps in examples.items():
            if t != task:
                continue
            d = samples[(t, model)][len(samples[(t, model)]) // 2]  # the evaluation half's first: its maps
            if not (d / "generated.png").is_file():
                lines += [f"Methods figure of {model} skipped: its sample {d.name} keeps no generated.png to draw the "
                          "maps over (store.images).", ""]
                continue
            mask = SampleMaps.load(d / "maps.npz").get("mask/region")
            path = fig_dir / task / model / "methods.png"
            figures.schedule("benchmark.report.figures:methods_figure",
                             (d / "generated.png", maps, mask, cfg.scoring.threshold, path,
                              f"{task} / {model}: generated-side map of each method (sample {d.name})"), path,
                             f"{key}|{d.name}")
            lines += [f"![methods]({path.relative_to(lb_dir).as_posix()})", ""]
    write_markdown(lb_dir / "methods.md", lines)
    return True
