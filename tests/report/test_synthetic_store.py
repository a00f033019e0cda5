"""The synthetic stores ``perf --scale report`` measures (:mod:`benchmark.perf.synthetic_store`) read as valid stores:
every job intact, every sample counted, IMACS formed from the stored terms; the synthetic history reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.config import RunConfig
from benchmark.report import history, trends
from benchmark.report.store_view import failure_frame, load_view, sample_frame
from benchmark.store import RECORD_KEYS, SCHEMA_VERSION, check_job, stored_jobs
from benchmark.perf.synthetic_store import QUALITY, TASKS, model_names, write_history, write_store

N_MODELS, N_SAMPLES, SHARD = 3, 5, 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_store(root / "run", N_MODELS, N_SAMPLES, tasks=TASKS[:2], shard_size=SHARD)


def test_every_job_is_intact_and_every_sample_counted(store, monkeypatch, tmp_path):
    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.load(store)
    jobs = stored_jobs(cfg.out_dir / "store")
    assert len(jobs) == 2 * N_MODELS * 3  # 2 tasks x 3 models x ceil(5 / 2) shards
    for job in jobs:
        record = check_job(job)  # result.json readable, every listed file with its size and SHA-256
        assert set(RECORD_KEYS) <= set(json.loads((job / "result.json").read_text()))
        assert record.schema == SCHEMA_VERSION and record.sample_metrics == sorted(QUALITY)
        assert {"samples/" + s["sample_id"] + "/maps.npz" for s in record.samples} <= set(record.files)

    view = load_view(cfg)
    assert [(m.task, m.model) for m in view.models] == [(t, m) for t in ("viton_hd", "object_inpainting")
                                                         for m in model_names(N_MODELS)]
    assert view.baselines == {"model-00-random-init"}
    for sm in view.models:
        assert sm.job_failures == [] and sm.complete
        assert sm.sample_ids == [f"{i:06d}" for i in range(N_SAMPLES)]
        assert len(sm.sample_dirs) == N_SAMPLES
    assert failure_frame(view).empty


def test_the_frame_holds_every_stored_row_and_imacs_from_the_terms(store, monkeypatch, tmp_path):
    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.load(store)
    frame = sample_frame(load_view(cfg))
    per_sample = frame.groupby(["task", "model", "sample_id"]).size()
    assert len(per_sample) == 2 * N_MODELS * N_SAMPLES
    # viton_hd: 6 segmentation scores, 2 areas, 4 quality metrics, 2 IMACS, LPIPS
    assert set(per_sample.loc["viton_hd"]) == {15}
    job = next(p for p in stored_jobs(cfg.out_dir / "store") if "viton_hd-v1/model-01-" in p.as_posix())
    record = json.loads((job / "result.json").read_text())
    sid = record["samples"][0]["sample_id"]
    terms = record["imacs_terms"]["samples"][sid]["g"]
    i = record["imacs_terms"]["thresholds"].index(0.4)
    got = frame[(frame.task == "viton_hd") & (frame.model == "model-01") & (frame.sample_id == sid)
                & (frame.metric == "imacs_g")]["value"].item()
    assert got == pytest.approx(terms["a"][i] - 3.0 * terms["b"][i], abs=1e-12)
    for side in record["imacs_terms"]["samples"][sid].values():  # terms shaped like real ones
        assert np.all(np.diff(side["a"]) <= 0) and np.all(np.diff(side["b"]) <= 0)
        assert 0 <= min(side["b"]) and max(side["a"]) <= 1


def test_the_synthetic_history_reads_back_with_one_state_per_night(store, tmp_path):
    cfg = RunConfig.load(store)
    path = write_history(tmp_path / "history.csv", store, n_nights=4, n_samples=N_SAMPLES)
    past = history.read(path)
    assert past.run_id.nunique() == 4
    assert len(past.drop_duplicates(history.STATE)) == 4 * 2 * N_MODELS
    tested = [m for m in model_names(N_MODELS) if not m.endswith("random-init")]
    rows = trends.trend_rows(past, "viton_hd", 1, cfg.scoring_key(), tested, ["imacs_g", "masked_psnr"])
    assert len(rows) == 4 * len(tested) * 2
    newest = past[past.run_id == past.run_id.max()]
    assert history.with_unrecorded(past[past.run_id < past.run_id.max()], newest).shape == past.shape
