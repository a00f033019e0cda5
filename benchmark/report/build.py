"""Build the report: :func:`build_report` reads the stored records of a config (:mod:`benchmark.report.store_view`),
builds tidy frames (:mod:`benchmark.report.tables`, :mod:`benchmark.analysis`), and renders them
(:mod:`benchmark.report.render`, :mod:`benchmark.report.figures`). It writes the frames under the run's
``results/`` and the leaderboards under the config's leaderboard folder; a run that executed jobs also
records its history rows. No dataset is opened and no model is loaded.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.analysis import (
    METHODS,
    Resampling,
    SweepData,
    SweepGrid,
    confounds,
    correlation_sweep,
    render_confounds,
    render_sweep,
)
from benchmark.analysis.asymptotic import LARGE_N
from benchmark.analysis.format import format_value as fmt
from benchmark.analysis.format import oriented_label
from benchmark.analysis.landmarks import render_imacs_landmarks
from benchmark.analysis.validity import orientation, render_within_between, within_between
from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.defaults import IMACS_SCORES
from benchmark.errors import UserError
from benchmark.registry import SAMPLE_METRICS, metric_label
from benchmark.report import changes, history, memo, metaeval, one_pass_page, render, trends
from benchmark.report.figures_page import Figures, model_figures
from benchmark.report.methods import method_leaderboard, start_methods
from benchmark.report.pairs import render_pairs, task_pairs
from benchmark.report.store_view import StoreView, failure_frame, load_view, sample_frame, sweep_terms
from benchmark.report.tables import aggregate, main_table, quality_metrics, set_metrics, write_csv
from benchmark.report.verdict import CONFOUNDS, CORRELATIONS, PAIRS, anchor, render_verdict, verdict

VERSIONED = ("torch", "diffusers", "transformers", "torchmetrics", "clean-fid", "lpips", "scipy", "pandas", "dask")
SCORES = IMACS_SCORES
N_PERMUTATIONS = 9999  # Monte-Carlo permutations where n! is larger (exact enumeration below that)
SWEEP_MAX_BOOT = 1000  # bootstrap resamples of a sweep's held-out cells, at most
# results/<file> <- the concatenated per-task frames of ``TaskAnalyses.<field>``
ANALYSIS_CSVS = (("correlations.csv", "correlations"), ("confounds.csv", "confounds"), ("sweep.csv", "sweep"),
                 ("one_pass_agreement.csv", "one_pass"), ("pairs.csv", "pairs"), ("candidates.csv", "candidates"))


def resampling(cfg: RunConfig) -> Resampling:
    """The report's resampling settings: the config's ``scoring.n_boot`` and ``seed``, :data:`N_PERMUTATIONS`
    permutations and 95% intervals. Built once per report and passed to every test and interval."""
    return Resampling(n_boot=cfg.scoring.n_boot, n_permutations=N_PERMUTATIONS, seed=cfg.seed)


@dataclass
class TaskAnalyses:
    """The analyses of one task page; :func:`_analyses` fills the first fields, later passes of
    :func:`build_report` the pairs and the meta-evaluation. Frames are empty where an analysis does not apply."""

    correlations: pd.DataFrame  # within_between: pooled / within / between correlations with quality
    confounds: pd.DataFrame  # correlations with the region areas, plain and partial
    sweep: pd.DataFrame  # the held-out sweeps of both sides (leading columns task, quality, side)
    sweep_figures: dict[str, Path]  # side -> sweep heat map, for the sides with a defined cell
    skipped: list[str]  # why an analysis is n/a
    scatter: Path | None  # IMACS vs quality per sample; None without both
    one_pass: pd.DataFrame  # one-pass vs generation-time IMACS (one_pass_page.agreement, with its task)
    one_pass_cost: pd.DataFrame
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # pairs.task_pairs
    pairs_unavailable: str = ""  # which models have no paired FID / KID, and why
    metaeval: dict = field(default_factory=dict)  # metaeval.analyse
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)  # metaeval's candidates, with their task


@dataclass
class TaskPage:
    """Everything one task page is rendered from (frames and figure paths; no computation left)."""

    task: TaskConfig
    table: pd.DataFrame  # main_table
    agg: pd.DataFrame  # this task's model means (with the notes of undefined scores)
    sets: pd.DataFrame  # set metrics (FID / KID, or why not)
    failures: pd.DataFrame
    quality: list[str]
    analyses: TaskAnalyses | None  # filled by the analysis passes of build_report
    flagged: list[str]  # the task's flagged changes since the last comparable run
    maps: list[str]  # the "Attribution maps" section: a line per model linking its page
    trend: Path | None  # figures/<task>/trend.png, None without a recorded run

    @property
    def main(self) -> list[str]:
        """The columns of the short table: IMACS, then the first two quality metrics."""
        return [m for m in SCORES if m in self.table] + self.quality[:2]

    @property
    def set_cols(self) -> list[str]:
        return sorted(set(self.sets.metric)) if not self.sets.empty else []


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=resolve_path("."), timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _header(cfg: RunConfig, view: StoreView, git: str) -> list[str]:
    records = [r for sm in view.models for r in sm.records]
    devices = sorted({r.device for r in records})
    sampling = sorted({f"{r.sampling['num_inference_steps']} steps, CFG {r.sampling['guidance_scale']:g}"
                       for r in records})
    keys = sorted({sm.generation_key for sm in view.models})
    built = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"- report of run `{cfg.name}` built {built} at git `{git}`; generation key(s) "
             f"{', '.join(f'`{k}`' for k in keys)}; scoring lambda {cfg.scoring.lam:g}, "
             f"threshold {cfg.scoring.threshold:g}",
             f"- device: {', '.join(devices) or 'n/a'}; sampling: {'; '.join(sampling) or 'n/a'}",
             "- versions: " + ", ".join(f"{k} {_version(k)}" for k in VERSIONED)]
    if cfg.label:
        lines.insert(0, f"> **{cfg.label}**: numbers from this run describe that model only.")
    return lines


def build_report(cfg: RunConfig, results_dir: Path | None = None) -> dict[str, Path]:
    """Rebuild everything downstream of the store; returns the written paths. ``results_dir``: where the frames
    go (default ``<output dir>/results``).

    Every complete stored state not yet in ``history.csv`` is appended to it (:mod:`benchmark.report.history`),
    whichever command builds the report."""
    view = load_view(cfg)
    if not any(sm.records or sm.job_failures for sm in view.models) and not view.plan_failures:
        raise UserError(f"no stored results for {cfg.name} under {cfg.out_dir / 'store'}: run it first")
    res_dir, lb_dir = Path(results_dir or cfg.out_dir / "results"), cfg.leaderboard_path
    fig_dir = lb_dir / "figures"
    frame, failures = sample_frame(view), failure_frame(view)
    write_csv(frame, res_dir / "samples.csv")
    write_csv(failures, res_dir / "failures.csv")
    settings = resampling(cfg)
    agg = aggregate(frame, settings)
    write_csv(agg, res_dir / "models.csv")
    # Baselines (randomly initialised copies) are method baselines, not models under test: they stay on the
    # leaderboard but do not enter the attribution-vs-quality correlations.
    tested = frame[~frame.model.isin(view.baselines)]
    git = git_revision()
    hist_path = lb_dir / "history.csv"
    past = history.read(hist_path)
    deltas = history.deltas(past, history.current_rows(view, agg, git))
    header = _header(cfg, view, git)
    since = changes.compare(view, frame, SCORES, settings)
    changes.write(since, res_dir)
    overview_rows = []
    complete = history.current_rows(view, agg, git, complete_only=True)  # the states the history may hold
    recorded = history.with_unrecorded(past, complete)
    with Figures(fig_dir, cfg.cluster.workers) as figures:
        # The report's worker processes first score the attribution methods, then draw the figures, while this
        # process builds the tables and the analyses.
        method_scores = start_methods(cfg, view, res_dir, figures)
        pages = {}
        for name, task in sorted(view.tasks.items()):
            quality = quality_metrics(task, frame)
            sets = set_metrics(view, task, cfg.metrics.kid_scale)
            task_failures = failures[failures.task == name]
            table = main_table(task, agg, sets, task_failures, view, quality, deltas)
            write_csv(table, lb_dir / f"{name}.csv")
            models = sorted((r.model for r in table.itertuples()), key=lambda m: m in view.baselines)
            tracked = ["imacs_g", *quality[:1]]
            trend_rows = trends.trend_rows(recorded, name, task.version, cfg.scoring_key(),
                                           [m for m in models if m not in view.baselines], tracked)
            pages[name] = TaskPage(task, table, agg[agg.task == name], sets, task_failures, quality, None,
                                   _flagged(since[since.task == name]),
                                   model_figures(cfg, view, name, models, lb_dir, figures),
                                   trends.schedule_trend(figures, trend_rows, name, tracked))
        for name, page in tqdm(pages.items(), desc="report"):
            tf = tested[tested.task == name]
            analyses = page.analyses = _analyses(cfg, view, page.task, tf, page.quality[:2], figures, settings)
            analyses.pairs, analyses.pairs_unavailable = task_pairs(cfg, view, page.task, tf, page.quality, settings)
            write_csv(analyses.pairs, lb_dir / f"{name}_pairs.csv")
        has_methods = method_leaderboard(cfg, view, method_scores, lb_dir, res_dir, header, figures, settings)
        methods = metaeval.method_samples(res_dir, has_methods)
        for name, page in pages.items():  # what reads the method scores, then the pages
            analyses = page.analyses
            analyses.metaeval = metaeval.analyse(cfg, view, name, frame[frame.task == name], page.quality, methods,
                                                 analyses.sweep, settings, figures)
            analyses.candidates = analyses.metaeval["candidates"].assign(task=name)
            render.write_markdown(lb_dir / f"{name}.md", _task_page(cfg, view, page, header, lb_dir))
            render.write_markdown(lb_dir / f"{name}_full.md", _full_page(page))
            table = page.table
            overview_rows.append({"task": name, "models": len(table),
                                  "samples": int(table["n"].sum()) if len(table) else 0,
                                  "failures": len(page.failures), "best": _best(table),
                                  "trend": page.trend.relative_to(lb_dir).as_posix() if page.trend else ""})
        for fname, key in ANALYSIS_CSVS:
            non_empty = [f for page in pages.values() if not (f := getattr(page.analyses, key)).empty]
            write_csv(pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(), res_dir / fname)
        figures.finish()
    render.write_markdown(lb_dir / "README.md", render.overview(header, overview_rows, since,
                                                                1 - cfg.scoring.regression.alpha, has_methods))
    history.record(hist_path, complete, past)
    return {"index": lb_dir / "README.md", "results": res_dir}


def _analyses(cfg: RunConfig, view: StoreView, task: TaskConfig, tf: pd.DataFrame, quality: list[str],
              figures: Figures, settings: Resampling) -> TaskAnalyses:
    """Correlations (pooled / within / between), confounds, the held-out sweeps and the one-pass agreement of one
    task, resampled as ``settings`` says; their figures go to ``figures`` (drawn when their inputs changed)."""
    fig_dir = figures.fig_dir
    cache = cfg.out_dir / "results" / "cache"
    key = memo.digest(tf, SCORES, quality, settings)
    correlations = memo.cached(cache, f"{task.name}-correlations", key, within_between, tf, SCORES, quality,
                               METHODS, resampling=settings) if quality else pd.DataFrame()
    confound_frame = memo.cached(cache, f"{task.name}-confounds", key, confounds, tf, SCORES, quality,
                                 resampling=settings) if quality else pd.DataFrame()
    skipped = []
    for score in SCORES:
        if quality and score not in set(correlations.get("x", [])):
            reasons = sorted({n for n in tf.loc[tf.metric == score, "note"] if n}) or ["no defined value"]
            skipped.append(f"{metric_label(score)} vs quality: n/a, fewer than 3 complete pairs "
                           f"({'; '.join(reasons)})")
    sweep_rows, sweep_figures = [], {}
    terms = sweep_terms(view, task.name, sorted(tf.model.unique())) if quality else {}
    grid = SweepGrid(cfg.scoring.swept_lambdas, cfg.scoring.swept_thresholds, (cfg.scoring.lam, cfg.scoring.threshold))
    sweep_settings = replace(settings, n_boot=min(settings.n_boot, SWEEP_MAX_BOOT))
    for side, t in terms.items():
        q_lookup = tf[tf.metric == quality[0]].set_index(["model", "sample_id"])["value"]
        idx = [int(np.flatnonzero(np.isclose(t["thresholds"], x))[0]) for x in cfg.scoring.swept_thresholds]
        q = q_lookup.reindex(pd.MultiIndex.from_arrays([t["model"], t["sample_id"]])).to_numpy(float)
        if (np.isfinite(q) & np.isfinite(t["a"][:, idx[0]])).sum() < 6:
            skipped.append(f"IMACS_{side} sweep: n/a, fewer than 6 samples with both a score and "
                           f"{metric_label(quality[0])}")
            continue
        data = SweepData(t["a"][:, idx], t["b"][:, idx], q, t["model"], units=t["sample_id"],
                         sign=orientation(quality[0]))
        sw = memo.cached(cache, f"{task.name}-sweep-{side}",
                         memo.digest(vars(data), vars(grid), cfg.scoring.sweep_method, sweep_settings),
                         correlation_sweep, data, grid, cfg.scoring.sweep_method, sweep_settings)
        for column, value in (("side", side), ("quality", quality[0]), ("task", task.name)):
            sw.insert(0, column, value)  # leading columns: task, quality, side
        sweep_rows.append(sw)
        if sw["selection"].notna().any():
            path = fig_dir / task.name / f"sweep_imacs_{side}.png"
            q_name = oriented_label(quality[0], data.sign, {quality[0]: metric_label(quality[0])})
            title = f"{task.name}: {cfg.scoring.sweep_method.capitalize()}(IMACS_{side}, {q_name})"
            figures.schedule("benchmark.analysis.sweep:plot_sweep_heatmap", (sw, path, title), path, memo.digest(sw))
            sweep_figures[side] = path
    scatter = None
    if quality and tf["metric"].isin(SCORES).any():
        scatter = fig_dir / task.name / "scatter.png"
        figures.schedule("benchmark.scoring.figures:plot_scatter", (tf, scatter, quality[:1]), scatter,
                         memo.digest(tf, quality[:1]))
    one_pass = one_pass_page.agreement(cfg, view, task.name, tf, quality[0] if quality else None, settings)
    return TaskAnalyses(correlations=correlations, confounds=confound_frame,
                        sweep=pd.concat(sweep_rows, ignore_index=True) if sweep_rows else pd.DataFrame(),
                        sweep_figures=sweep_figures, skipped=skipped, scatter=scatter,
                        one_pass=one_pass.assign(task=task.name), one_pass_cost=one_pass_page.cost(view, task.name))


def _asymptotic(frame: pd.DataFrame) -> bool:
    """Whether any row of an analysis frame used the normal approximations (:mod:`benchmark.analysis.asymptotic`)."""
    return "p_method" in frame and frame["p_method"].astype(str).str.startswith("normal approximation").any()


def _best(table: pd.DataFrame) -> str:
    """The overview's best model: the table's first model with samples and its IMACS_g; n/a when undefined."""
    top = table[table["n"] > 0] if "imacs_g" in table else table.head(0)
    if top.empty or pd.isna(top["imacs_g"].iloc[0]):
        return "n/a"
    return f"{top['model'].iloc[0]} {fmt(top['imacs_g'].iloc[0])}"


def _flagged(since: pd.DataFrame) -> list[str]:
    """``model/metric: flag change [CI]`` of one task's flagged changes (:func:`changes.compare`)."""
    return [f"{r.model}/{metric_label(r.metric)}: {r.flagged} {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
            for r in since[since.flagged != ""].itertuples()]


def _task_page(cfg: RunConfig, view: StoreView, page: TaskPage, header: list[str], lb_dir: Path) -> list[str]:
    """The task page: title and header, the verdict, then the sections it reads from."""
    task, table, analyses = page.task, page.table, page.analyses
    labels = {n: SAMPLE_METRICS.label(n) for n in SAMPLE_METRICS.names()}
    lines = render_imacs_landmarks(cfg.scoring.lam)
    lines += ["x_g (IMACS_g): " + (task.region or "the generated region") + "; x_r (IMACS_r): "
              + (task.reference_region or "the reference region") + ". Baselines (random-init copies) are models "
              "whose maps carry no learned attribution.", "",
              "Cells: mean [bootstrap 95% CI] over samples; (change since the latest earlier run with the same task "
              "version, model, generation settings, scoring settings and samples).", ""]
    if (not table.empty and table["n"].max() > LARGE_N) or any(
            _asymptotic(f) for f in (analyses.correlations, analyses.confounds, analyses.pairs)):
        lines += [f"Above {LARGE_N:,} values, each p-value and CI on this page is the normal approximation of the "
                  "permutation test or bootstrap it names (permutation variance, Fisher's z, Student's t; "
                  "`benchmark/analysis/asymptotic.py`); each row's method is in `results/*.csv`.", ""]
    if not table.empty:
        lines += render.table(table, page.main, page.set_cols) + [""]
    lines += render_pairs(analyses.pairs, labels, analyses.pairs_unavailable)
    lines += [f"Every metric, with CIs: [{task.name}_full.md]({task.name}_full.md) and `{task.name}.csv`.", ""]
    lines += render.set_metric_notes(page.sets) + render.undefined_notes(page.agg, page.main)
    if page.flagged:
        lines += ["**Since the last comparable run** (paired per sample; `results/changes.csv`): "
                  + "; ".join(page.flagged), ""]
    lines += render.failures_section(page.failures)
    if not analyses.correlations.empty:
        lines += ["## Does IMACS track output quality?", "",
                  "Random-init baselines left out. p: exact or Monte-Carlo permutation test; CI: BCa bootstrap.", ""]
        lines += render_within_between(analyses.correlations, labels) + [""]
        if analyses.scatter is not None:
            lines += [render.link(analyses.scatter, lb_dir, "IMACS vs quality per sample"), ""]
    lines += [f"- {line}" for line in analyses.skipped] + ([""] if analyses.skipped else [])
    lines += metaeval.section(analyses.metaeval, lb_dir)
    if not analyses.confounds.empty:
        lines += ["## Confounds: the size of the regions", ""] + render_confounds(analyses.confounds, labels)
    for side, path in analyses.sweep_figures.items():
        sw = analyses.sweep[analyses.sweep.side == side]
        lines += [f"## IMACS_{side} sweep over lambda and threshold", ""]
        lines += render_sweep(sw, f"IMACS_{side} vs "
                                  f"{oriented_label(sw['quality'].iloc[0], sw['sign'].iloc[0], labels)}")
        lines += [render.link(path, lb_dir, f"sweep {side}"), ""]
    op = [sm for sm in view.one_pass if sm.task == task.name and sm.records]
    if op:
        lines += one_pass_page.section(analyses.one_pass, analyses.one_pass_cost, labels,
                                       "t = " + ", ".join(str(t) for t in sorted(op[0].records[0].timesteps)))
    if page.trend is not None:
        shown = " and ".join(metric_label(m) for m in ["imacs_g", *page.quality[:1]])
        lines += ["## Trends over the nightly runs", "",
                  f"Per model under test, its mean {shown} in each state recorded in `history.csv` with this task "
                  "version and scoring settings.", "", render.link(page.trend, lb_dir, "trend"), ""]
    headings = {PAIRS: "Which model is better (paired, same samples)", CORRELATIONS: "Does IMACS track output quality?",
                CONFOUNDS: "Confounds: the size of the regions"}
    links = {key: anchor(h) for key, h in headings.items() if f"## {h}" in lines}
    clauses = verdict(analyses.pairs, analyses.correlations, analyses.confounds,
                      page.quality[0] if page.quality else None)
    return ([f"# {task.name} (task v{task.version})", "", task.description, ""] + header + [""]
            + render_verdict(clauses, links) + lines + page.maps)


def _full_page(page: TaskPage) -> list[str]:
    """Every metric of the task's models, with CIs and changes."""
    table, name = page.table, page.task.name
    metrics = [c for c in table.columns if f"{c}_ci_low" in table.columns and c not in page.main]
    return [f"# {name}: every metric", "", f"[back]({name}.md)", ""] + render.table(table, page.main + metrics,
                                                                                  page.set_cols)
