"""The numbers a run stores do not depend on how it is scheduled; a finished config reruns nothing."""

from __future__ import annotations

import pytest

import benchmark.run.distributed
from benchmark.config import RunConfig
from benchmark.run.jobs import is_done
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import report_tables, result_stats, smoke_config, smoke_dict, stored_rows


@pytest.fixture(scope="module")
def inline_run(tiny_model, tmp_path_factory):
    cfg = smoke_config(tmp_path_factory.mktemp("inline"), tiny_model)
    summary = execute(cfg, scheduler="inline")
    return cfg, summary


def test_smoke_plan_is_two_shards_of_two(inline_run):
    cfg, summary = inline_run
    jobs = plan_jobs(cfg).jobs
    assert [j.indices for j in jobs] == [(0, 1), (2, 3)]
    assert len({j.key for j in jobs}) == 2
    assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])


@pytest.mark.parametrize("workers", [1, 2])
def test_local_cluster_stores_the_inline_numbers(inline_run, tiny_model, tmp_path, workers):
    ref_cfg, _ = inline_run
    cfg = smoke_config(tmp_path, tiny_model)
    summary = execute(cfg, scheduler="local", workers=workers)
    assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])
    rows, ref_rows = stored_rows(cfg), stored_rows(ref_cfg)
    assert len(rows) > 4 * 10  # every sample has its attribution, segmentation and quality rows
    assert {r[1] for r in rows} == {r[1] for r in ref_rows} and len({r[1] for r in rows}) == 4
    assert rows == ref_rows  # exact: per-sample seeds and a fixed per-job thread count
    assert report_tables(cfg) == report_tables(ref_cfg)


def test_rerun_of_a_finished_config_runs_zero_jobs(inline_run, monkeypatch):
    cfg, _ = inline_run
    before = result_stats(cfg)
    assert len(before) == 2

    def no_cluster(*args, **kwargs):
        raise AssertionError("a rerun with nothing to do must not start a cluster")

    monkeypatch.setattr(benchmark.run.distributed, "make_client", no_cluster)
    for scheduler in ("inline", "local"):
        summary = execute(cfg, scheduler=scheduler, workers=2)
        assert summary.skipped == summary.jobs == 2
        assert (summary.finished, summary.failed) == (0, [])
    assert result_stats(cfg) == before


def test_another_shard_size_does_not_take_stored_shards(inline_run, tiny_model, tmp_path):
    # shard_size is not in the generation key: the shard keys must still tell (0, 1) from (0, 1, 2, 3).
    cfg, _ = inline_run
    whole = RunConfig.from_dict({**smoke_dict(tmp_path, tiny_model), "output_dir": str(cfg.out_dir), "shard_size": 4})
    assert whole.generation_key(whole.tasks[0]) == cfg.generation_key(cfg.tasks[0])
    [job] = plan_jobs(whole).jobs
    assert job.indices == (0, 1, 2, 3) and not is_done(whole, job)
    assert {j.key for j in plan_jobs(cfg).jobs}.isdisjoint({job.key})
