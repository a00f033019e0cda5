"""A run killed part-way (its driver, or one of its workers) resumes without redoing finished jobs and
ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmark.config import REPO_ROOT, RunConfig
from benchmark.run.jobs import is_done, job_dir
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import cli_env, report_tables, result_stats, smoke_dict, stored_rows, write_config

SLOW = {"sampling": {"num_inference_steps": 4}}  # a little more time per batch to kill into


def _uninterrupted(data: dict, root: Path) -> RunConfig:
    cfg = RunConfig.from_dict({**data, "output_dir": str(root / "run"), "leaderboard_dir": str(root / "leaderboards")})
    summary = execute(cfg, scheduler="inline")
    assert summary.finished == summary.jobs and not summary.failed
    return cfg


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _partial_jobs(cfg: RunConfig, jobs) -> list:
    """Jobs that wrote sample files but no result.json yet."""
    return [j for j in jobs if not is_done(cfg, j) and (job_dir(cfg, j) / "samples").is_dir()
            and any((job_dir(cfg, j) / "samples").rglob("maps.npz"))]


def test_driver_killed_part_way_resumes_without_recomputing(tiny_model, tmp_path):
    # 4 jobs of one sample each, run inline by the CLI in a subprocess we SIGKILL after the first result.
    data = smoke_dict(tmp_path, tiny_model, shard_size=1, batch_size=1, **SLOW)
    config = write_config(data, tmp_path / "config.yaml")
    cfg = RunConfig.load(config)
    jobs = plan_jobs(cfg).jobs
    assert len(jobs) == 4
    cmd = [sys.executable, "-m", "benchmark", "run", "--config", str(config), "--scheduler", "inline"]
    proc = subprocess.Popen(cmd + ["--no-report"], cwd=REPO_ROOT, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: sum(is_done(cfg, j) for j in jobs) >= 1 or proc.poll() is not None, 900, "a first result")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = result_stats(cfg)
    assert 1 <= len(before) < len(jobs), f"the kill should land part-way, {len(before)}/{len(jobs)} jobs were done"

    # Whatever an interrupted job left (sample files, a half-written temp result) does not count as done.
    unfinished = [j for j in jobs if j.key not in before]
    (job_dir(cfg, unfinished[0]) / "samples").mkdir(parents=True, exist_ok=True)
    stale = job_dir(cfg, unfinished[0]) / "result.json.99999.tmp"
    stale.write_text('{"key": "trunc')
    assert not any(is_done(cfg, j) for j in unfinished)

    lb = tmp_path / "leaderboards-resumed"
    out = subprocess.run(cmd + ["--leaderboard-dir", str(lb)], cwd=REPO_ROOT, env=cli_env(), capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"jobs: 4 ({len(before)} already stored, {4 - len(before)} run, 0 failed)" in out.stdout
    after = result_stats(cfg)
    assert set(after) == {j.key for j in jobs}
    assert {k: after[k] for k in before} == before  # same file, never rewritten
    for j in jobs:
        json.loads((job_dir(cfg, j) / "result.json").read_text())

    ref = _uninterrupted(data, tmp_path / "uninterrupted")
    assert stored_rows(cfg) == stored_rows(ref)
    resumed_csv = (lb / "viton_hd.csv").read_text()
    assert resumed_csv == report_tables(ref)["viton_hd.csv"]
    header = resumed_csv.splitlines()[0].split(",")
    assert not [c for c in header if "time" in c or "date" in c or "run_id" in c]


def test_worker_killed_mid_job_is_retried_and_results_match(cluster, tiny_model, tmp_path):
    local, client = cluster
    # 2 jobs of 2 samples in batches of 1: a job has stored its first sample long before its result.json.
    data = smoke_dict(tmp_path, tiny_model, batch_size=1, cluster={"job_timeout_s": 900, "retries": 1}, **SLOW)
    cfg = RunConfig.from_dict(data)
    jobs = plan_jobs(cfg).jobs
    pids = client.run(os.getpid)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(execute, cfg, None, local.scheduler_address)
        partial = _wait_for(lambda: _partial_jobs(cfg, jobs) or running.done(), 900, "a job part-way")
        assert not running.done(), "the run ended before a job was seen part-way"
        victim = partial[0]
        holder = [addr for addr, keys in client.processing().items() if victim.dask_key in keys]
        assert holder, f"no worker is processing {victim.key}"
        os.kill(pids[holder[0]], signal.SIGKILL)
        killed_mid_job = not is_done(cfg, victim)
        summary = running.result(timeout=1800)

    assert killed_mid_job, "the worker was killed after its job finished: nothing was interrupted"
    assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])
    for j in jobs:  # the interrupted job was redone whole: a complete record under its own key
        record = json.loads((job_dir(cfg, j) / "result.json").read_text())
        assert record["key"] == j.key and record["n_samples"] == len(j.indices)
    ref = _uninterrupted(data, tmp_path / "uninterrupted")
    assert stored_rows(cfg) == stored_rows(ref)
    assert report_tables(cfg) == report_tables(ref)
    client.wait_for_workers(2, timeout=600)  # the nanny restarted the killed worker
