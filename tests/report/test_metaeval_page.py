"""The "Which score tracks quality?" section from a small synthetic store frame, end to end."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import within_between
from benchmark.report import metaeval
from benchmark.report.store_view import FRAME_COLUMNS

MODELS = {"full": 1.0, "mid": 0.5, "weak": 0.0}  # model -> quality offset
N = 24


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    area = rng.uniform(0.1, 0.3, N)  # a property of the sample: the same for every model
    rows = []
    for model, offset in {**MODELS, "random-init": 0.0}.items():
        quality = 20 + 3 * offset + rng.normal(size=N)
        values = {"imacs_g": 0.3 * offset + 0.1 * (quality - quality.mean()) + 0.1 * rng.normal(size=N),
                  "imacs_r": rng.normal(size=N), "masked_psnr": quality, "area_g": area}
        rows += [("t", model, "unet", f"s{i:02d}", metric, float(v[i]), "")
                 for metric, v in values.items() for i in range(N)]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def _methods(frame: pd.DataFrame) -> pd.DataFrame:
    """Top-k (supervised) IMACS_g on the second half of each model's samples, as the method frame holds it."""
    g = frame[(frame.metric == "imacs_g") & (frame.model != "random-init") & (frame.sample_id >= f"s{N // 2:02d}")]
    return g.assign(method="I2AM top-7 heads (supervised)", value=g.value + 0.01)[
        ["task", "model", "method", "sample_id", "metric", "value"]]


def _figures(tmp_path, todo: list) -> SimpleNamespace:
    """A stand-in for :class:`benchmark.report.figures_page.Figures` that records what is scheduled."""
    return SimpleNamespace(fig_dir=tmp_path / "figures", schedule=lambda fn, args, out, inputs: todo.append((fn, args)))


def test_section_from_stored_frames(tmp_path) -> None:
    frame = _frame()
    cfg = SimpleNamespace(out_dir=tmp_path, seed=0, scoring=SimpleNamespace(n_boot=200))
    view = SimpleNamespace(baselines={"random-init"}, one_pass=[])
    todo: list = []
    result = metaeval.analyse(cfg, view, "t", frame, ["masked_psnr"], _methods(frame), pd.DataFrame(),
                              Resampling(n_boot=200, n_permutations=999, seed=0), _figures(tmp_path, todo))
    cands = result["candidates"].set_index("candidate")
    assert list(cands.index) == ["IMACS_g", "IMACS_r", "top-k heads (supervised)", "−area(x_g)",
                                 "random-init copy's IMACS_g"]
    missing = " ".join(result["missing"])
    for absent in ("one-pass", "label-free", "ConceptAttention", "sweep"):
        assert absent in missing

    # IMACS_g's row is the page's within (combined) and between-models rows, to the digit.
    page = within_between(frame[frame.model != "random-init"], ["imacs_g"], ["masked_psnr"], ["spearman"],
                          resampling=Resampling(n_boot=200, n_permutations=999, seed=0)).set_index("scope")
    ref = cands.loc["IMACS_g"]
    for ours, theirs in (("within", "statistic"), ("within_ci_low", "ci_low"), ("within_ci_high", "ci_high"),
                         ("within_p", "p_value")):
        assert ref[ours] == pytest.approx(page.loc["within (combined)", theirs], abs=1e-12)
    assert ref["between"] == pytest.approx(page.loc["between models", "statistic"])
    assert ref["n"] == 3 * N and ref["n_models"] == 3 and np.isnan(ref["diff"])

    # Top-k differs from IMACS_g by a constant, so on its half it ranks alike: a zero difference.
    top = cands.loc["top-k heads (supervised)"]
    assert top["n"] == 3 * N // 2 and top["diff"] == pytest.approx(0.0) and top["diff_p"] == 1.0
    # The area is the same for every model on the same samples: every pair ties on the score, none on quality.
    area = cands.loc["−area(x_g)"]
    assert area["score_ties"] == 3 and area["quality_ties"] == 0 and area["accuracy"] == 0.0
    assert "random-init for full, mid, weak" in cands.loc["random-init copy's IMACS_g", "note"]

    lines = metaeval.section(result, tmp_path)
    text = "\n".join(lines)
    assert lines[0] == "## Which score tracks quality?"
    assert "PermutationSigDiff" in text and "**n needed**" in text and "3 models" in text
    assert "- not available for this task: IMACS_g one-pass" in text
    assert "![candidates](figures/t/candidates.png)" in text
    assert [fn for fn, *_ in todo] == ["benchmark.report.metaeval:plot_forest"]
    path = metaeval.plot_forest(*todo[0][1])
    assert path.is_file() and path.stat().st_size > 1000


def test_no_quality_metric_gives_no_section(tmp_path) -> None:
    cfg = SimpleNamespace(out_dir=tmp_path, seed=0, scoring=SimpleNamespace(n_boot=200))
    view = SimpleNamespace(baselines=set(), one_pass=[])
    result = metaeval.analyse(cfg, view, "t", _frame(), [], metaeval.method_samples(tmp_path, False),
                              pd.DataFrame(), Resampling(n_boot=200, n_permutations=999, seed=0),
                              _figures(tmp_path, []))
    assert result["candidates"].empty and metaeval.section(result, tmp_path) == []


def test_one_model_with_few_samples_still_renders(tmp_path) -> None:
    frame = _frame()
    small = frame[(frame.model == "full") & (frame.sample_id < "s05")]
    cfg = SimpleNamespace(out_dir=tmp_path, seed=0, scoring=SimpleNamespace(n_boot=50))
    view = SimpleNamespace(baselines=set(), one_pass=[])
    result = metaeval.analyse(cfg, view, "t", small, ["masked_psnr"], metaeval.method_samples(tmp_path, False),
                              pd.DataFrame(), Resampling(n_boot=50, n_permutations=99, seed=0), _figures(tmp_path, []))
    ref = result["candidates"].set_index("candidate").loc["IMACS_g"]
    assert ref["n"] == 5 and np.isnan(ref["between"]) and np.isnan(ref["accuracy"])
    text = "\n".join(metaeval.section(result, tmp_path))
    assert "random-init copy's IMACS_g: no random-init copy stored" in text
    assert "between: fewer than 3 complete pairs" in text
    assert "models (n/a (fewer than 2 models))" not in text and "n/a (fewer than 2 models)" in text
