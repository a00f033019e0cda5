"""A job's identity is what it generates: a nightly that changes anything else reruns nothing, the report reads
the store alone, and history compares like with like."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import benchmark.run.jobs
import benchmark.run.tasks
from benchmark.config import RunConfig
from benchmark.scoring.imacs import imacs
from benchmark.report import build_report
from benchmark.results.sample_maps import SampleMaps
from benchmark.run.runner import execute

from runner_helpers import make_model, smoke_dict


def _cfg(root, model, **kw) -> RunConfig:
    data = smoke_dict(root, model, **kw)
    data["leaderboard_dir"] = str(root / "lb")
    return RunConfig.from_dict(data)


def _run(cfg: RunConfig):
    summary = execute(cfg, scheduler="inline")
    assert not summary.failed and not summary.plan_failures
    build_report(cfg)
    return summary


def _body(path) -> str:
    """A leaderboard page without its header lines (build time, git revision)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("- report of run"))


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "model")


def test_adding_a_model_runs_only_its_jobs(tmp_path, model):
    other = make_model(tmp_path / "other")
    first = _run(_cfg(tmp_path, model))
    assert (first.jobs, first.finished) == (2, 2)
    models = [{"name": "rand", "adapter": "reference_unet", "path": str(model)},
              {"name": "second", "adapter": "reference_unet", "path": str(other)}]
    second = _run(_cfg(tmp_path, model, models=models))
    assert (second.jobs, second.skipped, second.finished) == (4, 2, 2)
    assert set(pd.read_csv(tmp_path / "lb" / "viton_hd.csv").model) == {"rand", "second"}


def test_scoring_settings_rerun_nothing_and_rescore_from_the_store(tmp_path, model):
    _run(_cfg(tmp_path, model, max_samples=6))
    # lambda and threshold off the sweep grid (but threshold on the stored grid): rescored, and swept
    changed = _cfg(tmp_path, model, max_samples=6, scoring={"lambda": 4.0, "threshold": 0.45, "n_boot": 50,
                                                            "regression": {"alpha": 0.1}})
    summary = _run(changed)
    assert (summary.jobs, summary.finished) == (3, 0)
    table = pd.read_csv(tmp_path / "lb" / "viton_hd.csv").set_index("model")
    # Independent of the stored terms: IMACS recomputed from each stored map at the new settings.
    maps = [SampleMaps.load(p) for p in (tmp_path / "run" / "store").rglob("maps.npz")]
    expected = np.mean([imacs(m.get("g/ulam"), m.get("mask/region"), lam=4.0, threshold=0.45).as_float()
                        for m in maps])
    assert len(maps) == 6
    assert table.loc["rand", "imacs_g"] == pytest.approx(expected, rel=1e-5)
    sweep = pd.read_csv(tmp_path / "run" / "results" / "sweep.csv")
    cell = sweep[sweep["default"]]
    assert set(zip(cell["lambda"], cell["threshold"])) == {(4.0, 0.45)}


def test_more_samples_run_only_the_new_ones_and_limit_reuses_stored_shards(tmp_path, model):
    assert _run(_cfg(tmp_path, model, max_samples=2)).finished == 1
    more = _run(_cfg(tmp_path, model, max_samples=4))
    assert (more.jobs, more.skipped, more.finished) == (2, 1, 1)
    fewer = _cfg(tmp_path, model).select(limit=1)
    summary = _run(fewer)
    assert (summary.jobs, summary.finished) == (1, 0)  # sample 0 is read from the stored shard (0, 1)
    assert pd.read_csv(tmp_path / "lb" / "viton_hd.csv").set_index("model").loc["rand", "n"] == 1


def test_report_needs_neither_models_nor_datasets(tmp_path, model, monkeypatch):
    cfg = _cfg(tmp_path, model)
    _run(cfg)
    before = {p.name: _body(p) for p in (tmp_path / "lb").glob("*.md")}
    csv_before = (tmp_path / "lb" / "viton_hd.csv").read_text()
    shutil.move(str(model), str(tmp_path / "moved-away"))

    def forbidden(*args, **kwargs):
        raise AssertionError("report must not open a dataset or hash a model")

    monkeypatch.setattr(benchmark.run.tasks, "build_dataset", forbidden)
    monkeypatch.setattr(benchmark.run.jobs, "model_files_hash", forbidden)
    build_report(cfg)
    assert {p.name: _body(p) for p in (tmp_path / "lb").glob("*.md")} == before
    assert (tmp_path / "lb" / "viton_hd.csv").read_text() == csv_before


def test_different_configs_are_not_compared_and_a_rebuilt_report_adds_no_history(tmp_path, model):
    _run(_cfg(tmp_path, model))
    history = tmp_path / "lb" / "history.csv"
    rows = len(pd.read_csv(history))
    assert rows > 0
    _run(_cfg(tmp_path, model, seed=5))  # other generation settings: a run, but nothing to compare with
    page = (tmp_path / "lb" / "viton_hd.md").read_text()
    assert "Regression" not in page and not any(f"({s}0." in page for s in "+-")
    after_run = len(pd.read_csv(history))
    assert after_run == 2 * rows
    build_report(_cfg(tmp_path, model, seed=5))
    build_report(_cfg(tmp_path, model, seed=5))
    assert len(pd.read_csv(history)) == after_run  # a state already in the history is never added again


def test_a_retrained_model_is_compared_with_its_previous_run(tmp_path):
    folder = make_model(tmp_path / "model")
    cfg = _cfg(tmp_path, folder)
    _run(cfg)
    shutil.rmtree(folder)
    from benchmark.models.mini import save_tiny_random_model

    from runner_helpers import CONDITIONS

    save_tiny_random_model(folder, CONDITIONS, num_inference_steps=2, seed=7)  # same name and path, new weights
    summary = _run(cfg)
    assert summary.finished == 2  # new weights: a new model hash, so new jobs
    table = pd.read_csv(tmp_path / "lb" / "viton_hd.csv").set_index("model")
    history = pd.read_csv(tmp_path / "lb" / "history.csv")
    runs = sorted(history.run_id.unique())
    assert len(runs) == 2
    prev = history[(history.run_id == runs[0]) & (history.metric == "imacs_g")]["value"].iloc[0]
    delta = table.loc["rand", "imacs_g"] - prev
    if round(abs(delta), 3) >= 0.001:
        assert table.loc["rand", "imacs_g_change"] == pytest.approx(delta, abs=1e-5)
        assert f"({delta:+.3f})" in (tmp_path / "lb" / "viton_hd.md").read_text()
    else:
        assert np.isnan(table.loc["rand", "imacs_g_change"])
