"""Analyses and leaderboards, built only from the job store.

Writes under the run's output dir ``results/`` (tidy CSV frames) and under
``leaderboard_dir`` the per-task CSV + Markdown, the overview ``README.md``,
figures, and the appended ``history.csv``.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.analysis.bootstrap import bootstrap_mean
from benchmark.analysis.correlation import correlation
from benchmark.analysis.sweep import correlation_sweep, plot_sweep_heatmap
from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.figures import plot_scatter, save_png, strip, to_uint8, overlay, mark_position
from benchmark.imacs import imacs_terms
from benchmark.maps import prepare_map
from benchmark.results.frames import fmt, load_records, sample_dirs, sample_frame, failure_frame, write_csv
from benchmark.results.sample_maps import SampleMaps
from benchmark.runner import plan_jobs

ATTRIBUTION = {"imacs_g": "higher", "imacs_r": "higher", "miou_g": "higher", "miou_r": "higher",
               "ap_g": "higher", "ap_r": "higher", "pixel_acc_g": "higher", "pixel_acc_r": "higher"}
LABELS = {"imacs_g": "IMACS_g", "imacs_r": "IMACS_r", "masked_psnr": "masked PSNR", "masked_ssim": "masked SSIM",
          "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID", "kid": "KID", "miou_g": "mIoU_g",
          "miou_r": "mIoU_r", "ap_g": "AP_g", "ap_r": "AP_r", "pixel_acc_g": "pix.acc_g", "pixel_acc_r": "pix.acc_r"}
QUALITY_ORDER = ("masked_psnr", "masked_ssim", "ssim", "psnr")
VERSIONED = ("torch", "diffusers", "transformers", "torchmetrics", "clean-fid", "lpips", "scipy", "pandas", "dask")


def arrow(direction: str) -> str:
    return "↑" if direction == "higher" else "↓"


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=resolve_path("."), timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


# --- set-level metrics ----------------------------------------------------------------------
def set_metrics(cfg: RunConfig, task: TaskConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """FID / KID / LPIPS rows per model: a value, or ``unavailable`` with the reason and paths looked at."""
    from benchmark.metrics import resolve_metric_weights

    rows = []
    wanted = [m.name for m in task.metrics if m.name in ("fid", "kid", "lpips")]
    for name in wanted:
        res = resolve_metric_weights(name, cfg.metrics.weights_dir)
        for model in sorted(frame["model"].unique()):
            if hasattr(res, "reason"):
                note = f"{name}: {res.reason}"
                rows.append({"model": model, "metric": name, "value": np.nan, "note": note})
            else:
                rows.append({"model": model, "metric": name, "value": np.nan,
                             "note": "weights found; set-level computation runs with `benchmark.metrics` on a GPU run"})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "note"])


# --- aggregation ----------------------------------------------------------------------------
def aggregate(frame: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    rows = []
    for (task, model, metric), g in frame.groupby(["task", "model", "metric"], sort=True):
        values = g["value"].to_numpy()
        notes = "; ".join(sorted(set(n for n in g["note"].fillna("") if n)))
        if np.isfinite(values).sum() == 0:  # undefined for every sample (e.g. not applicable): say so
            rows.append({"task": task, "model": model, "metric": metric, "mean": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan, "n": 0, "n_undefined": len(values), "note": notes})
            continue
        ci = bootstrap_mean(values, n_boot=n_boot, seed=0)
        rows.append({"task": task, "model": model, "metric": metric, "mean": ci.mean, "ci_low": ci.ci_low,
                     "ci_high": ci.ci_high, "n": ci.n, "n_undefined": ci.n_dropped, "note": notes})
    return pd.DataFrame(rows)


def _corr(x, y, method, n_boot) -> dict:
    """Correlation fields, or NaNs with the reason when too few complete pairs exist."""
    try:
        return correlation(x, y, method=method, n_boot=n_boot).to_dict()
    except ValueError as err:
        n = int(np.sum(np.isfinite(x) & np.isfinite(y)))
        return {"method": method, "statistic": np.nan, "p_value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                "n": n, "note": str(err)}


def correlations(frame: pd.DataFrame, agg: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    rows = []
    for task, tf in frame.groupby("task"):
        metrics = set(tf["metric"])
        quality = [q for q in QUALITY_ORDER if q in metrics][:2]  # the task's primary quality metrics
        for x in ("imacs_g", "imacs_r"):
            if x not in metrics or tf.loc[tf.metric == x, "value"].notna().sum() < 3:
                continue
            for y in quality:
                for method in ("spearman", "pearson"):
                    a = agg[(agg.task == task)].pivot(index="model", columns="metric", values="mean")
                    if x in a and y in a:
                        rows.append({"task": task, "level": "model", "scope": "across models", "x": x, "y": y,
                                     **_corr(a[x].to_numpy(), a[y].to_numpy(), method, n_boot)})
                    wide = tf[tf.metric.isin([x, y])].pivot_table(index=["model", "sample_id"], columns="metric",
                                                                  values="value", dropna=False)
                    if x in wide and y in wide:
                        rows.append({"task": task, "level": "sample", "scope": "pooled", "x": x, "y": y,
                                     **_corr(wide[x].to_numpy(), wide[y].to_numpy(), method, n_boot)})
                        for model, g in wide.groupby(level="model"):
                            rows.append({"task": task, "level": "sample", "scope": model, "x": x, "y": y,
                                         **_corr(g[x].to_numpy(), g[y].to_numpy(), method, n_boot)})
    return pd.DataFrame(rows)


def sweep_terms(maps: SampleMaps, thresholds) -> dict[str, np.ndarray]:
    """Per threshold, the inside and outside terms of IMACS so any lambda is a - lambda * b."""
    out = {}
    sides = [("g", "g/ulam", "mask/region")]
    r_key = "rm/ulam" if "rm/ulam" in maps.arrays else "r/ulam"
    if r_key in maps.arrays:
        sides.append(("r", r_key, "mask/reference"))
    for side, key, mask_key in sides:
        m, mask = maps.get(key), maps.get(mask_key)
        a = np.full(len(thresholds), np.nan)
        b = np.full(len(thresholds), np.nan)
        if m is not None and mask is not None and 0 < (mask > 0.5).float().mean() < 1:
            for i, thr in enumerate(thresholds):
                mh = prepare_map(m, tuple(mask.shape), thr)
                if not torch.isnan(mh).any():
                    a[i], b[i] = imacs_terms(mh, mask)
        out[side] = np.stack([a, b])
    return out


def sweeps(cfg: RunConfig, jobs, frame: pd.DataFrame, fig_dir: Path) -> tuple[pd.DataFrame, dict]:
    lams, thrs = list(cfg.scoring.sweep_lambdas), list(cfg.scoring.sweep_thresholds)
    rows, figures = [], {}
    for task, tf in frame.groupby("task"):
        quality_name = next((q for q in QUALITY_ORDER if q in set(tf.metric)), None)
        if quality_name is None:
            continue
        q_lookup = tf[tf.metric == quality_name].set_index(["model", "sample_id"])["value"]
        terms, quality = {"g": [], "r": []}, {"g": [], "r": []}
        for model in sorted(tf.model.unique()):
            for d in sample_dirs(cfg, jobs, task, model):
                t = sweep_terms(SampleMaps.load(d / "maps.npz"), thrs)
                for side, arr in t.items():
                    terms[side].append(arr)
                    quality[side].append(q_lookup.get((model, d.name), np.nan))
        for side in ("g", "r"):
            if len(terms[side]) < 3:
                continue
            arr = np.stack(terms[side])  # (S, 2, T)
            q = np.asarray(quality[side], dtype=float)

            def score(lam, thr, arr=arr):
                i = thrs.index(thr)
                return arr[:, 0, i] - lam * arr[:, 1, i]

            sw = correlation_sweep(score, q, lams, thrs, n_boot=min(cfg.scoring.n_boot, 300))
            sw.insert(0, "side", side)
            sw.insert(0, "quality", quality_name)
            sw.insert(0, "task", task)
            rows.append(sw)
            if sw["spearman"].notna().any():
                path = fig_dir / task / f"sweep_imacs_{side}.png"
                plot_sweep_heatmap(sw, path, value="spearman", default=(cfg.scoring.lam, cfg.scoring.threshold),
                                   title=f"{task}: Spearman(IMACS_{side}, {quality_name}) per sample, all models")
                figures[(task, side)] = path
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), figures


# --- figures per model ----------------------------------------------------------------------
def model_figures(cfg: RunConfig, jobs, task: str, model: str, fig_dir: Path, n_examples: int = 3) -> dict[str, Path]:
    dirs = sample_dirs(cfg, jobs, task, model)
    if not dirs:
        return {}
    out = {}
    base = fig_dir / task / model
    rows = [to_uint8(_read_rgb(d / "overlay.png")) for d in dirs[:n_examples]]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    save_png(np.concatenate(rows, 0), base / "ulam_overlays.png")
    out["ulam"] = base / "ulam_overlays.png"
    d = dirs[0]
    maps = SampleMaps.load(d / "maps.npz")
    gen = _read_rgb(d / "generated.png")
    thr = cfg.scoring.threshold
    for level, name in (("tlam", "TLAM"), ("hlam", "HLAM"), ("llam", "LLAM")):
        g = maps.get(f"g/{level}")
        if g is None:
            continue
        panels = [overlay(gen, g[i], thr) for i in range(g.shape[0])]
        r = maps.get(f"r/{level}")
        if r is not None:
            panels += [np.full((gen.shape[1], 2, 3), 0, np.uint8)] + [
                to_uint8(_heat(r[i], gen.shape[1])) for i in range(r.shape[0])]
        save_png(strip(panels), base / f"{level}.png")
        out[level] = base / f"{level}.png"
    vol = maps.get("sr/volume")
    if vol is not None:
        h, w = maps.meta["latent_grid"]
        region = maps.get("mask/region")
        positions = _sram_positions(region, (h, w))
        panels = []
        for a, b in positions:
            panels.append(mark_position(gen, (a + 0.5) / h, (b + 0.5) / w))
            panels.append(to_uint8(_heat(vol[a * w + b].view(*maps.meta["token_grid"]), gen.shape[1])))
        save_png(strip(panels), base / "sram.png")
        out["sram"] = base / "sram.png"
    return out


def _read_rgb(path: Path) -> torch.Tensor:
    """A stored PNG as (3, H, W) float in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def _heat(m: torch.Tensor, height: int) -> torch.Tensor:
    """A raw map as a jet-coloured (3, height, width) image (normalised, not thresholded)."""
    from matplotlib import colormaps

    norm = prepare_map(m, tuple(m.shape[-2:]), threshold=-1.0)
    arr = np.nan_to_num(norm.numpy())
    rgb = torch.from_numpy(colormaps["jet"](arr)[..., :3]).permute(2, 0, 1).float()
    scale = max(1, height // max(m.shape[-2], 1))
    return rgb.repeat_interleave(scale, 1).repeat_interleave(scale, 2)


def _sram_positions(region: torch.Tensor | None, latent: tuple[int, int]) -> list[tuple[int, int]]:
    """Three latent positions: inside the region (centre), its edge, and outside (or fixed points)."""
    h, w = latent
    if region is None or region.sum() == 0:
        return [(h // 4, w // 4), (h // 2, w // 2), (3 * h // 4, 3 * w // 4)]
    small = torch.nn.functional.interpolate(region[None, None], size=latent, mode="area")[0, 0]
    ys, xs = torch.nonzero(small > 0.5, as_tuple=True)
    if len(ys) == 0:
        ys, xs = torch.nonzero(small > 0, as_tuple=True)
    centre = (int(ys.float().mean()), int(xs.float().mean()))
    top = (int(ys.min()), int(xs.float().mean()))
    outside = torch.nonzero(small == 0, as_tuple=True)
    far = (int(outside[0][0]), int(outside[1][0])) if len(outside[0]) else (0, 0)
    return [centre, top, far]


# --- leaderboards ---------------------------------------------------------------------------
def _metric_columns(task: TaskConfig, agg: pd.DataFrame) -> list[tuple[str, str]]:
    present = set(agg.metric)
    cols = [(m, d) for m, d in ATTRIBUTION.items() if m in present and m.startswith("imacs")]
    cols += [(m.name, m.direction) for m in task.metrics if m.name in present]
    cols += [(m, d) for m, d in ATTRIBUTION.items() if m in present and not m.startswith("imacs")]
    return cols


def _history_delta(history: pd.DataFrame, run_id: str, task: str, model: str, metric: str, value: float):
    prev = history[(history.task == task) & (history.model == model) & (history.metric == metric) & (history.run_id != run_id)]
    if prev.empty or np.isnan(value):
        return None
    return value - float(prev.iloc[-1]["value"])


def render_task(cfg: RunConfig, task: TaskConfig, agg: pd.DataFrame, sets: pd.DataFrame, failures: pd.DataFrame,
                corr: pd.DataFrame, figs: dict, sweep_figs: dict, history: pd.DataFrame, run_id: str,
                header: list[str], lb_dir: Path, baselines: set[str] = frozenset()) -> tuple[pd.DataFrame, list[str]]:
    ta = agg[agg.task == task.name]
    cols = _metric_columns(task, ta)
    set_cols = [(m.name, m.direction) for m in task.metrics if m.name in set(sets.metric)] if not sets.empty else []
    models = sorted(ta.model.unique(), key=lambda m: -ta[(ta.model == m) & (ta.metric == "imacs_g")]["mean"].fillna(-9).sum())
    csv_rows, md, regressions = [], [], []
    head = ["model", "method"] + [f"{LABELS.get(m, m)} {arrow(d)}" for m, d in cols + set_cols] + ["n", "failures"]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        method = "I2AM (all heads), baseline: random-init copy" if model in baselines else "I2AM (all heads)"
        row = {"model": model, "method": method}
        cells = [model, method]
        n = int(ta[ta.model == model]["n"].max()) if not ta[ta.model == model].empty else 0
        for metric, direction in cols:
            r = ta[(ta.model == model) & (ta.metric == metric)]
            if r.empty or np.isnan(r.iloc[0]["mean"]):
                note = r.iloc[0]["note"] if not r.empty else ""
                cells.append("n/a" + (f" ({note})" if note and "not applicable" in note else ""))
                row.update({metric: np.nan, f"{metric}_ci_low": np.nan, f"{metric}_ci_high": np.nan})
                continue
            r = r.iloc[0]
            delta = _history_delta(history, run_id, task.name, model, metric, r["mean"])
            flag = ""
            if delta is not None:
                worse = -delta if direction == "higher" else delta
                scale = max(abs(r["mean"]), 1e-9)
                flag = f" ({'+' if delta >= 0 else ''}{delta:.3f}" + (" ⚠ regression)" if worse > cfg.scoring.regression_tolerance * scale else ")")
                if "regression" in flag:
                    regressions.append(f"{task.name}/{model}/{metric}: {delta:+.3f}")
            cells.append(f"{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]{flag}")
            row.update({metric: r["mean"], f"{metric}_ci_low": r["ci_low"], f"{metric}_ci_high": r["ci_high"]})
        for metric, _ in set_cols:
            s = sets[(sets.model == model) & (sets.metric == metric)]
            cells.append("unavailable¹" if s.empty or np.isnan(s.iloc[0]["value"]) else fmt(s.iloc[0]["value"]))
            row[metric] = np.nan if s.empty else s.iloc[0]["value"]
        n_fail = int(((failures.task == task.name) & (failures.model == model)).sum())
        cells += [str(n), str(n_fail)]
        row.update({"n": n, "failures": n_fail})
        md.append("| " + " | ".join(cells) + " |")
        csv_rows.append(row)
    table = pd.DataFrame(csv_rows)
    write_csv(table, lb_dir / f"{task.name}.csv")
    lines = [f"# {task.name} (task v{task.version})", "", task.description, ""] + header + [""]
    lines += ["Cells: mean [bootstrap 95% CI] over samples; (change since the previous run).", ""] + md + [""]
    notes = sorted(set(sets["note"])) if not sets.empty else []
    if notes:
        lines += [f"¹ {n}" for n in notes] + [""]
    if regressions:
        lines += ["**Regressions beyond tolerance:** " + "; ".join(regressions), ""]
    f = failures[failures.task == task.name]
    if not f.empty:
        lines += ["## Failed samples", "", "| model | sample | file | error |", "|---|---|---|---|"]
        lines += [f"| {r.model} | {r.sample_id} | `{r.file}` | {r.error} |" for r in f.itertuples()] + [""]
    tc = corr[corr.task == task.name] if not corr.empty else corr
    if not tc.empty:
        for level, title in (("model", "Correlation across models (one point per model)"),
                             ("sample", "Correlation across samples (pooled and per model)")):
            sub = tc[(tc.level == level)]
            if sub.empty:
                continue
            lines += [f"## {title}", "", "Baseline models (random-init copies) are left out.", "", "| x | y | scope | method | r | p | 95% CI | n |", "|---|---|---|---|---|---|---|---|"]
            for r in sub.itertuples():
                lines.append(f"| {LABELS.get(r.x, r.x)} | {LABELS.get(r.y, r.y)} | {r.scope} | {r.method} | "
                             f"{fmt(r.statistic)} | {fmt(r.p_value, 4)} | [{fmt(r.ci_low)}, {fmt(r.ci_high)}] | {r.n} |")
            lines.append("")
        scatter = figs.get(("scatter", task.name))
        if scatter:
            lines += [f"![scatter]({scatter.relative_to(lb_dir).as_posix()})", ""]
    for side in ("g", "r"):
        p = sweep_figs.get((task.name, side))
        if p:
            lines += [f"## IMACS_{side} sweep over lambda and threshold", "",
                      f"![sweep {side}]({p.relative_to(lb_dir).as_posix()})", ""]
    lines += ["## Attribution maps", "",
              "Per model: reference | ULAM_r over the reference | generated | ULAM_g over the generated image "
              f"(thresholded at {cfg.scoring.threshold}, eq. 9); then, for the first sample, TLAM (time groups), "
              "HLAM (heads) and LLAM (layers), generated side then reference side; SRAM for three generated "
              "positions (marked) over the reference grid.", ""]
    for model in models:
        mf = figs.get((task.name, model), {})
        if not mf:
            continue
        lines += [f"### {model}", ""]
        for key in ("ulam", "tlam", "hlam", "llam", "sram"):
            if key in mf:
                lines.append(f"**{key.upper()}**  \n![{key}]({mf[key].relative_to(lb_dir).as_posix()})  ")
        lines.append("")
    (lb_dir / f"{task.name}.md").write_text("\n".join(lines) + "\n")
    return table, regressions


def _ci_cells(g: pd.DataFrame, metrics: list[str]) -> list[str]:
    """'mean [low, high]' per metric from a summary frame (columns metric, mean, ci_low, ci_high); n/a if absent."""
    cells = []
    for m in metrics:
        r = g[g.metric == m]
        cells.append("n/a" if r.empty or np.isnan(r.iloc[0]["mean"]) else
                     f"{fmt(r.iloc[0]['mean'])} [{fmt(r.iloc[0]['ci_low'])}, {fmt(r.iloc[0]['ci_high'])}]")
    return cells


def paired_method_differences(per_sample: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Per (task, model, method != I2AM all heads, metric): bootstrap mean of the per-sample difference
    to I2AM all heads on the same samples (random-init copies have nothing to pair with and are skipped)."""
    from benchmark.analysis.bootstrap import bootstrap_mean

    rows = []
    base = per_sample[per_sample.method == "I2AM all heads"].set_index(["task", "model", "sample_id", "metric"])["value"]
    for (task, model, method, metric), g in per_sample[per_sample.method != "I2AM all heads"].groupby(
            ["task", "model", "method", "metric"], sort=False):
        ref = base.reindex(pd.MultiIndex.from_frame(g[["task", "model", "sample_id", "metric"]]))
        diff = g["value"].to_numpy(float) - ref.to_numpy(float)
        diff = diff[np.isfinite(diff)]
        if len(diff) < 2:
            continue
        c = bootstrap_mean(diff, n_boot=n_boot, seed=0)
        rows.append({"task": task, "model": model, "method": method, "metric": metric, "mean": c.mean,
                     "ci_low": c.ci_low, "ci_high": c.ci_high, "n": c.n})
    return pd.DataFrame(rows, columns=["task", "model", "method", "metric", "mean", "ci_low", "ci_high", "n"])


def method_leaderboard(cfg: RunConfig, jobs, frame: pd.DataFrame, lb_dir: Path, res_dir: Path, header: list[str]) -> None:
    """leaderboards/methods.{csv,md}: attribution methods x models x tasks on the same captures."""
    from benchmark.methods.compare import compare_methods, summarise

    samples = {(t, m): sample_dirs(cfg, jobs, t, m) for t, m in frame[["task", "model"]].drop_duplicates().itertuples(index=False)}
    random_models = {m.name for tr in cfg.tasks for m in tr.models if "random_init" in m.options}
    per_sample, examples = compare_methods(samples, random_models, cfg.scoring.lam, cfg.scoring.threshold)
    if per_sample.empty:
        return
    write_csv(per_sample, res_dir / "methods_samples.csv")
    summary = summarise(per_sample, cfg.scoring.n_boot)
    wide = summary.pivot_table(index=["task", "model", "method"], columns="metric", values=["mean", "ci_low", "ci_high"])
    wide.columns = [f"{m}_{stat}" if stat != "mean" else m for stat, m in wide.columns]
    write_csv(wide.reset_index(), lb_dir / "methods.csv")
    lines = ["# Attribution methods", ""] + header + ["",
             "Maps on the evaluation half of each model's samples (heads ranked on the other half): generated side "
             "against x_g, reference side against x_r (eq. 17 maps; needs a reference mask and patch tokens). "
             "Cells: mean [bootstrap 95% CI]. Baselines: a uniform map; the maps of a randomly initialised copy of "
             "the model. The ConceptAttention-style maps (joint-attention transformers only) weight the reference "
             "tokens by the reference mask; I2AM needs no mask.", ""]
    paired = paired_method_differences(per_sample, cfg.scoring.n_boot)
    write_csv(paired, lb_dir / "methods_paired.csv")
    for task, tsum in summary.groupby("task"):
        lines += [f"## {task}", ""]
        for side, title in (("g", "Generated side"), ("r", "Reference side")):
            metrics = [f"{k}_{side}" for k in ("imacs", "miou", "ap", "pixel_acc")]
            if not set(metrics) & set(tsum.metric):
                continue
            lines += [f"### {title}", "", "| model | method | " + " | ".join(f"{LABELS[m]} ↑" for m in metrics) + " | n |",
                      "|---|---|" + "---|" * (len(metrics) + 1)]
            for (model, method), g in tsum[tsum.metric.isin(metrics)].groupby(["model", "method"], sort=False):
                lines.append(f"| {model} | {method} | " + " | ".join(_ci_cells(g, metrics)) + f" | {int(g['n'].max())} |")
            lines.append("")
        tp = paired[paired.task == task]
        if not tp.empty:
            metrics = [m for m in ("imacs_g", "miou_g", "imacs_r", "miou_r") if m in set(tp.metric)]
            lines += ["### Paired differences against I2AM all heads (same samples)", "",
                      "Mean of (method - I2AM all heads) per sample [bootstrap 95% CI]; a CI above 0 means the "
                      "method wins on this model.", "",
                      "| model | method | " + " | ".join(f"Δ {LABELS[m]}" for m in metrics) + " | n |",
                      "|---|---|" + "---|" * (len(metrics) + 1)]
            for (model, method), g in tp.groupby(["model", "method"], sort=False):
                lines.append(f"| {model} | {method} | " + " | ".join(_ci_cells(g, metrics)) + f" | {int(g['n'].max())} |")
            lines.append("")
        for (t, model), maps in examples.items():
            if t != task:
                continue
            d = samples[(t, model)][len(samples[(t, model)]) // 2]
            gen = _read_rgb(d / "generated.png")
            panels = [overlay(gen, m if m is not None else torch.ones(gen.shape[-2:]), cfg.scoring.threshold)
                      if m is not None else to_uint8(gen) for m in maps.values()]
            path = lb_dir / "figures" / task / model / "methods.png"
            save_png(strip(panels), path)
            lines += [f"{model}: " + " | ".join(maps) + "  ", f"![methods]({path.relative_to(lb_dir).as_posix()})", ""]
    (lb_dir / "methods.md").write_text("\n".join(lines) + "\n")


def build_report(cfg: RunConfig, record_history: bool = True) -> dict[str, Path]:
    """Rebuild everything downstream of the store; returns the written paths.

    ``record_history``: append this run's model means to ``history.csv`` (a run does; a
    rebuild of the same store with ``report`` does not, unless asked).
    """
    jobs = plan_jobs(cfg)
    records = load_records(cfg, jobs)
    if not records:
        raise RuntimeError(f"no stored results for {cfg.name} under {cfg.out_dir / 'store'}: run it first")
    res_dir = cfg.out_dir / "results"
    lb_dir = resolve_path(cfg.leaderboard_dir)
    fig_dir = lb_dir / "figures"
    frame = sample_frame(records)
    failures = failure_frame(records)
    write_csv(frame, res_dir / "samples.csv")
    write_csv(failures, res_dir / "failures.csv")
    agg = aggregate(frame, cfg.scoring.n_boot)
    write_csv(agg, res_dir / "models.csv")
    # Baselines (randomly initialised copies) are method baselines, not models under test: they stay on the
    # leaderboard but do not enter the attribution-vs-quality correlations.
    baselines = {m.name for tr in cfg.tasks for m in tr.models if "random_init" in m.options}
    tested = frame[~frame.model.isin(baselines)]
    corr = correlations(tested, agg[~agg.model.isin(baselines)], cfg.scoring.n_boot)
    write_csv(corr, res_dir / "correlations.csv")
    sweep, sweep_figs = sweeps(cfg, jobs, tested, fig_dir)
    write_csv(sweep, res_dir / "sweep.csv")
    figs: dict = {}
    tasks = {TaskConfig.load(resolve_path(tr.task)).name: TaskConfig.load(resolve_path(tr.task)) for tr in cfg.tasks}
    for task_name in tqdm(sorted(tasks), desc="figures"):
        tf = frame[frame.task == task_name]
        for model in sorted(tf.model.unique()):
            figs[(task_name, model)] = model_figures(cfg, jobs, task_name, model, fig_dir)
        if "imacs_g" in set(tf.metric):
            path = fig_dir / task_name / "scatter.png"
            if plot_scatter(tf[~tf.model.isin(baselines)], path, [q for q in QUALITY_ORDER if q in set(tf.metric)][:1]):
                figs[("scatter", task_name)] = path
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    devices = sorted({r["device"] for r in records})
    vers = versions()
    header = [f"- run `{cfg.name}` at {run_id}, git `{git_revision()}`, config hash `{cfg.hash()}`",
              f"- device: {', '.join(devices)}; sampling: " + "; ".join(sorted({json.dumps(r['sampling']) for r in records})),
              "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items())]
    if cfg.label:
        header.insert(0, f"> **{cfg.label}**: numbers from this run describe that model only.")
    hist_path = lb_dir / "history.csv"
    history = pd.read_csv(hist_path) if hist_path.is_file() else pd.DataFrame(
        columns=["run_id", "config_hash", "git", "task", "model", "metric", "value"])
    # Changes are shown against the run before this one; a rebuild (not recorded) is the last recorded run.
    baseline_id = run_id if record_history or history.empty else history["run_id"].iloc[-1]
    overview = ["# Leaderboards", ""] + header + ["", "| task | models | samples | failures | best IMACS_g | page |",
                                                  "|---|---|---|---|---|---|"]
    new_hist, all_regressions = [], []
    for name, task in sorted(tasks.items()):
        if name not in set(frame.task):
            continue
        sets = set_metrics(cfg, task, frame[frame.task == name])
        table, regs = render_task(cfg, task, agg, sets, failures, corr, figs, sweep_figs, history, baseline_id, header, lb_dir,
                                  baselines)
        all_regressions += regs
        best = table.sort_values("imacs_g", ascending=False).iloc[0] if "imacs_g" in table else None
        overview.append(f"| {name} | {len(table)} | {int(table['n'].sum())} | {int(table['failures'].sum())} | "
                        f"{best['model'] + ' ' + fmt(best['imacs_g']) if best is not None else 'n/a'} | [{name}.md]({name}.md) |")
        ta = agg[agg.task == name]
        new_hist += [{"run_id": run_id, "config_hash": cfg.hash(), "git": git_revision(), "task": name,
                      "model": r.model, "metric": r.metric, "value": r.mean} for r in ta.itertuples()]
    method_leaderboard(cfg, jobs, frame, lb_dir, res_dir, header)
    if (lb_dir / "methods.md").is_file():
        overview += ["", "Attribution methods compared on the same captures: [methods.md](methods.md)."]
    if all_regressions:
        overview += ["", "**Regressions since the previous run:** " + "; ".join(all_regressions)]
    overview += ["", "Frames behind these tables: `results/samples.csv` (one row per sample x metric), "
                 "`models.csv`, `correlations.csv`, `sweep.csv` in the run's output folder."]
    (lb_dir / "README.md").write_text("\n".join(overview) + "\n")
    if record_history:
        write_csv(pd.concat([history, pd.DataFrame(new_hist)], ignore_index=True), hist_path)
    return {"index": lb_dir / "README.md", "results": res_dir}
