"""A job no worker can run, or one that always raises, ends the run in bounded time and names the job."""

from __future__ import annotations

import pytest

import benchmark.run.distributed
from benchmark.run.jobs import is_done
from benchmark.run.distributed import RunError
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import make_broken_model, report_tables, smoke_config, stored_rows


def test_job_needing_a_resource_no_worker_offers_stops_with_its_key(cluster, tiny_model, tmp_path, monkeypatch):
    local, _ = cluster
    # The jobs ask for resources={"GPU": 1}; the cluster's workers offer none.
    monkeypatch.setattr(benchmark.run.distributed, "job_resources", lambda cfg, workers: {"GPU": 1})
    cfg = smoke_config(tmp_path, tiny_model, cluster={"job_timeout_s": 5, "retries": 1})
    keys = [j.key for j in plan_jobs(cfg).jobs]
    with pytest.raises(RunError) as err:
        execute(cfg, scheduler=local.scheduler_address)
    message = str(err.value)
    assert "no job finished within 5s" in message and "resources offered: none" in message
    for key in keys:
        assert f"{key} (no-worker)" in message
    assert not any(is_done(cfg, j) for j in plan_jobs(cfg).jobs)


@pytest.mark.parametrize("where", ["inline", "cluster"])
def test_always_failing_job_is_reported_by_key_and_others_finish(cluster, tiny_model, tmp_path, where):
    broken = make_broken_model(tiny_model, tmp_path / "broken")
    models = [{"name": "rand", "adapter": "reference_unet", "path": str(tiny_model)},
              {"name": "broken", "adapter": "reference_unet", "path": str(broken)}]
    cfg = smoke_config(tmp_path, tiny_model, models=models, cluster={"job_timeout_s": 600, "retries": 1})
    jobs = plan_jobs(cfg).jobs
    broken_keys = sorted(j.key for j in jobs if j.model.name == "broken")
    assert len(jobs) == 4 and len(broken_keys) == 2

    summary = execute(cfg, scheduler="inline" if where == "inline" else cluster[0].scheduler_address)
    assert summary.finished == 2
    assert sorted(f["job"] for f in summary.failed) == broken_keys
    for f in summary.failed:
        assert f["error"].startswith("FileNotFoundError") and "UNet" in f["error"], f["error"]
    assert [is_done(cfg, j) for j in jobs] == [j.model.name == "rand" for j in jobs]  # failed jobs rerun next time
    assert {r[0] for r in stored_rows(cfg)} == {"rand"}
    assert "rand" in report_tables(cfg)["viton_hd.csv"]
