"""The task page's verdict from hand-made frames (every branch), baselines below the rule, a page per model's maps,
and the trend figure from a small history."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark.report import history, render, trends
from benchmark.report.figures_page import Figures, model_figures, stamps_of
from benchmark.report.verdict import CONFOUNDS, CORRELATIONS, PAIRS, anchor, render_verdict, verdict
from benchmark.results.sample_maps import SampleMaps

NAN = np.nan


def _corr(scope, statistic, low, high, p, n, note="", method="spearman", y="masked_psnr"):
    return {"task": "t", "x": "imacs_g", "y": y, "x_sign": 1, "y_sign": 1, "method": method, "scope": scope,
            "model": None, "statistic": statistic, "p_value": p, "ci_low": low, "ci_high": high, "n": n,
            "n_dropped": 0, "p_method": "exact", "ci_method": "BCa", "note": note}


def _pair(a, b, diff, p_holm, better=""):
    return {"task": "t", "model_a": a, "model_b": b, "metric": "masked_psnr", "direction": "higher", "n": 64,
            "mean_diff": diff, "ci_low": diff - 0.1, "ci_high": diff + 0.1, "p_value": p_holm, "p_holm": p_holm,
            "p_method": "exact", "ci_method": "bootstrap", "better": better, "note": ""}


def _conf(kind, statistic, low, high, p, controls="", n=320, note=""):
    return {"task": "t", "kind": kind, "x": "imacs_g", "y": "masked_psnr", "x_sign": 1, "y_sign": 1,
            "controls": controls, "method": "spearman", "statistic": statistic, "p_value": p, "ci_low": low,
            "ci_high": high, "n": n, "n_dropped": 0, "p_method": "exact", "ci_method": "BCa", "note": note}


def _clauses(pairs=(), correlations=(), confounds=(), quality="masked_psnr"):
    return verdict(pd.DataFrame(list(pairs)), pd.DataFrame(list(correlations)), pd.DataFrame(list(confounds)),
                   quality)


# --- verdict ------------------------------------------------------------------------------------------------------

def test_no_quality_metric_computes_nothing():
    (only,) = verdict(None, None, None, None)
    assert only.answer == "not computed" and "no per-sample quality metric" in only.detail


def test_absent_frames_and_rows_read_not_computed():
    for clauses in (verdict(None, None, None, "masked_psnr"), _clauses(),
                    _clauses(correlations=[_corr("pooled", 0.5, 0.4, 0.6, 0.001, 320)],
                             confounds=[_conf("area", 0.1, 0.0, 0.2, 0.04)])):
        assert [c.answer for c in clauses] == ["not computed"] * 4
        assert all(c.section is None for c in clauses)
    # a correlation of another quality metric or method is not the one read
    other = [_corr("between models", 0.9, 0.5, 1.0, 0.01, 5, y="masked_ssim"),
             _corr("between models", 0.9, 0.5, 1.0, 0.01, 5, method="pearson")]
    assert _clauses(correlations=other)[1].answer == "not computed"


RULE = "at Holm-adjusted p < 0.05 with the CI of the difference excluding 0"


def test_no_pair_differs():
    c = _clauses(pairs=[_pair("a", "b", 0.3, 0.2), _pair("a", "c", 0.1, 0.01), _pair("b", "c", -0.2, NAN)])[0]
    assert (c.answer, c.section) == ("no", PAIRS)  # a-c: p below 0.05 but no better model (its CI includes 0)
    assert c.detail == f"no pair of models differs significantly on masked PSNR (0 of 2 pairs {RULE}); 1 pair(s) " \
                       "not testable"


def test_every_pair_differs_in_one_chain():
    pairs = [_pair("a", "b", 1.0, 0.001, "a"), _pair("a", "c", -2.0, 0.001, "c"), _pair("b", "c", -1.0, 0.01, "c")]
    c = _clauses(pairs=pairs)[0]
    assert c.answer == "yes, every pair"
    assert c.detail == f"all 3 pairs differ {RULE}: c > a > b"


def test_some_pairs_differ_grouped_by_the_better_model():
    pairs = [_pair("a", "b", 0.1, 0.3), _pair("a", "c", 2.0, 0.001, "a"), _pair("b", "c", 1.0, 0.02, "b"),
             _pair("c", "d", -1.0, 0.01, "d"), _pair("b", "d", 0.5, 0.4), _pair("a", "d", 0.5, 0.4),
             _pair("a", "e", 0.5, NAN)]
    c = _clauses(pairs=pairs)[0]
    assert c.answer == "partly"
    assert c.detail == f"3 of 6 pairs differ {RULE}: a > c; b > c; d > c; 1 pair(s) not testable"


@pytest.mark.parametrize("row, answer, detail", [
    (_corr("between models", 0.9, 0.2, 1.0, 0.017, 5), "yes",
     "Spearman 0.900 [0.200, 1.000], p 0.017, n = 5 models; with 5 models the interval is wide"),
    (_corr("between models", -0.9, -1.0, -0.2, 0.017, 5), "no, the reverse",
     "Spearman -0.900 [-1.000, -0.200], p 0.017, n = 5 models; with 5 models the interval is wide"),
    (_corr("between models", 0.9, 0.11, 1.0, 0.083, 5), "unclear",
     "Spearman 0.900 [0.110, 1.000], p 0.083, n = 5 models; the CI and the permutation p disagree; with 5 models "
     "the interval is wide"),
    (_corr("between models", 0.3, -0.2, 0.7, 0.4, 12), "not shown",
     "Spearman 0.300 [-0.200, 0.700], p 0.400, n = 12 models; CI includes 0"),
    (_corr("between models", 0.8, NAN, NAN, 0.333, 4, "too few models for a CI"), "not estimable",
     "Spearman 0.800, p 0.333, n = 4 models, but no CI: too few models for a CI"),
    (_corr("between models", NAN, NAN, NAN, NAN, 2, "fewer than 3 complete pairs"), "not estimable",
     "n = 2 models: fewer than 3 complete pairs"),
], ids=["agrees", "reversed", "unclear", "not-shown", "no-ci", "no-statistic"])
def test_between_models(row, answer, detail):
    c = _clauses(correlations=[row])[1]
    assert (c.answer, c.detail, c.section) == (answer, detail, CORRELATIONS)
    assert c.question == "Does IMACS_g order the models as masked PSNR does?"


def test_within_combined_counts_samples_without_the_few_models_caveat():
    rows = [_corr("within (combined)", 0.047, -0.069, 0.155, 0.403, 320),
            _corr("between models", 0.9, 0.2, 1.0, 0.017, 5)]
    between, within = _clauses(correlations=rows)[1:3]
    assert between.answer == "yes"
    assert (within.answer, within.detail) == ("not shown", "Spearman 0.047 [-0.069, 0.155], p 0.403, n = 320 "
                                                           "samples; CI includes 0")
    shown = _clauses(correlations=[_corr("within (combined)", 0.42, 0.31, 0.52, 0.0002, 320)])[2]
    assert shown.answer == "yes" and "wide" not in shown.detail


@pytest.mark.parametrize("plain, partial, answer, start", [
    ((0.46, 0.36, 0.55, 0.0002), (0.48, 0.38, 0.57, 0.0002), "no", "it stays with the areas partialled out 0.480"),
    ((0.46, 0.36, 0.55, 0.0002), (0.05, -0.05, 0.15, 0.3), "possibly", "it is no longer shown with the areas"),
    ((0.05, -0.05, 0.15, 0.3), (0.2, 0.1, 0.3, 0.001), "nothing to explain", "the plain correlation is not shown"),
    ((0.46, 0.36, 0.55, 0.0002), (0.5, NAN, NAN, 0.001), "not estimable", "n = 320: interval undefined"),
], ids=["stays", "gone", "nothing-to-explain", "not-estimable"])
def test_region_area(plain, partial, answer, start):
    rows = [_conf("plain", *plain), _conf("partial", *partial, controls="areas"),
            _conf("partial", 0.0, -0.1, 0.1, 0.9, controls="areas + model")]
    c = _clauses(confounds=rows)[3]
    assert (c.answer, c.section) == (answer, CONFOUNDS)
    assert c.detail.startswith(start)


def test_render_links_the_sections_on_the_page():
    clauses = _clauses(pairs=[_pair("a", "b", 0.3, 0.2)],
                       correlations=[_corr("between models", 0.9, 0.2, 1.0, 0.017, 5)])
    lines = render_verdict(clauses, {CORRELATIONS: anchor("Does IMACS track output quality?")})
    assert lines[:2] == ["## Verdict", ""] and lines[-1] == ""
    assert lines[2].startswith("- **Are the models distinguishable on masked PSNR?** no: ") and "](" not in lines[2]
    assert lines[3].endswith("([between-models row](#does-imacs-track-output-quality))")
    assert lines[4] == ("- **Does IMACS_g order the samples within a model as masked PSNR does?** not computed: "
                        "no such correlation row")
    assert anchor("Confounds: the size of the regions") == "#confounds-the-size-of-the-regions"


# --- the main table ------------------------------------------------------------------------------------------------

def test_baselines_sit_below_a_rule():
    rows = [("rand (baseline)", True, -0.8), ("full", False, 0.4), ("other-rand", True, -0.9), ("dit", False, 0.1)]
    frame = pd.DataFrame([{"model": m.split(" ")[0], "baseline": b, "imacs_g": v, "imacs_g_ci_low": v - 0.1,
                           "imacs_g_ci_high": v + 0.1, "n": 4, "failed_jobs": 0, "failed_samples": 0}
                          for m, b, v in rows])
    lines = render.table(frame, ["imacs_g"], [])
    names = [line.split(" | ")[0][2:] for line in lines[2:]]
    assert names == ["full", "dit", "*baselines (random-init copies):*", "rand (baseline)", "other-rand (baseline)"]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "baselines" not in "".join(render.table(frame[~frame.baseline], ["imacs_g"], []))


# --- a page per model ----------------------------------------------------------------------------------------------

def test_each_model_has_a_page_of_maps_linked_from_the_task_page(tmp_path):
    sample = tmp_path / "run" / "store" / "s0"
    g = np.zeros((4, 4), np.float32)
    SampleMaps({"g/ulam": g, "g/tlam": g[None], "sr/volume": np.zeros((16, 4), np.float16)}, {}).save(
        sample / "maps.npz")
    for name in ("generated.png", "reference.png"):  # the images the figures draw the maps over
        (sample / name).write_bytes(b"")
    cfg = SimpleNamespace(scoring=SimpleNamespace(threshold=0.4), out_dir=tmp_path / "run")
    view = SimpleNamespace(dirs=lambda task, model: {"full": [sample], "gone": []}[model])
    lb = tmp_path / "lb"
    figures = Figures(lb / "figures", 1)
    lines = model_figures(cfg, view, "t", ["full", "gone"], lb, figures)
    assert lines[0] == "## Attribution maps"
    assert [ln for ln in lines if "](" in ln] == ["[full](t/full.md): sample s0 (ULAM, TLAM, SRAM)  "]
    page = (lb / "t" / "full.md").read_text()
    assert "[back to t](../t.md)" in page and not (lb / "t" / "gone.md").exists()
    for name in ("ulam", "tlam", "sram"):  # the figures keep their place; the page reaches them from its folder
        assert f"](../figures/t/full/{name}.png)" in page
    assert sorted(key for *_, key, _ in figures.scheduled) == ["t/full/sram.png", "t/full/tlam.png",
                                                                 "t/full/ulam.png"]


# --- trends -------------------------------------------------------------------------------------------------------

def _history(runs=("2026-12-01T02:00:00Z", "2026-12-02T02:00:00Z")) -> pd.DataFrame:
    rows = []
    for i, run in enumerate(runs):
        for model, base in (("full", 0.4), ("dit", 0.1), ("random-init", -0.8)):
            for metric, value in (("imacs_g", base + 0.01 * i), ("masked_psnr", 12 + base + i), ("ssim", 0.2)):
                rows.append({"run_id": run, "git": "abc", "task": "t", "task_version": 1, "model": model,
                             "identity": model, "model_hash": f"h{i}", "generation_key": "g", "scoring_key": "s",
                             "samples_key": "k", "n": 64, "metric": metric, "value": value,
                             "ci_low": value - 0.05, "ci_high": value + 0.05})
    return pd.DataFrame(rows, columns=history.COLUMNS + history.CI_COLUMNS)


def test_trend_rows_keep_the_models_metrics_version_and_scoring():
    h = pd.concat([_history(), _history().assign(scoring_key="other", run_id="2026-12-03T00:00:00Z")])
    rows = trends.trend_rows(h, "t", 1, "s", ["full", "dit"], ["imacs_g", "masked_psnr"])
    assert set(rows.model) == {"full", "dit"} and set(rows.metric) == {"imacs_g", "masked_psnr"}
    assert rows.run_id.nunique() == 2 and list(rows.columns) == trends.TREND_COLUMNS
    assert trends.trend_rows(h, "t", 2, "s", ["full"], ["imacs_g"]).empty


def test_trend_figure_is_written_and_redrawn_only_when_its_rows_change(tmp_path):
    fig_dir = tmp_path / "figures"
    figures = Figures(fig_dir, 1)
    rows = trends.trend_rows(_history(), "t", 1, "s", ["full", "dit"], ["imacs_g", "masked_psnr"])
    path = trends.schedule_trend(figures, rows, "t", ["imacs_g", "masked_psnr"])
    assert path == fig_dir / "t" / "trend.png" and len(figures.scheduled) == 1
    figures.finish()
    assert path.read_bytes()[:4] == b"\x89PNG" and "t/trend.png" in stamps_of(fig_dir)
    again = Figures(fig_dir, 1)
    trends.schedule_trend(again, rows.copy(), "t", ["imacs_g", "masked_psnr"])
    assert again.scheduled == []
    trends.schedule_trend(again, rows.assign(value=rows.value + 1), "t", ["imacs_g", "masked_psnr"])
    assert len(again.scheduled) == 1
    assert trends.schedule_trend(Figures(fig_dir, 1), rows.head(0), "t", ["imacs_g"]) is None


def test_one_run_shows_points_and_says_so():
    one = trends.trend_rows(_history(runs=("2026-12-01T02:00:00Z",)), "t", 1, "s", ["full", "dit"],
                            ["imacs_g", "masked_psnr"])
    fig = trends.trend_figure(one, ["imacs_g", "masked_psnr"], "t")
    assert "one run in history so far" in fig.get_suptitle()
    assert {c.lines[0].get_linestyle() for ax in fig.axes for c in ax.containers} == {"None"}
    two = trends.trend_rows(_history(), "t", 1, "s", ["full", "dit"], ["imacs_g", "masked_psnr"])
    fig = trends.trend_figure(two, ["imacs_g", "masked_psnr"], "t")
    assert "2 runs" in fig.get_suptitle() and "bars: 95% CI" in fig.get_suptitle()
    assert {c.lines[0].get_linestyle() for ax in fig.axes for c in ax.containers} == {"-"}


def test_history_without_ci_columns_still_reads(tmp_path):
    path = tmp_path / "history.csv"
    _history().drop(columns=history.CI_COLUMNS).to_csv(path, index=False)
    old = history.read(path)
    assert len(old) == 18 and old[history.CI_COLUMNS].isna().all().all()
    new = _history(runs=("2026-12-03T02:00:00Z",)).assign(model_hash="h9")
    merged = history.with_unrecorded(old, pd.concat([new, old.head(3)]))
    assert len(merged) == 27  # the rows of the known state are not added twice
    assert history.record(path, new, old) == 3
    assert history.read(path)[history.CI_COLUMNS].notna().sum().tolist() == [9, 9]
