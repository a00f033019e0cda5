"""A damaged store is named, set aside and regenerated, never fatal: five kinds of damage on a finished store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.config import REPO_ROOT, RunConfig
from benchmark.run.jobs import job_dir
from benchmark.run.runner import execute, plan_jobs
from benchmark.store import DamagedJob, check_job, read_record

from runner_helpers import cli_env, report_tables, result_stats, smoke_dict, write_config


def _damage(cfg: RunConfig, jobs) -> dict[str, str]:
    """Five jobs damaged five ways; job key -> the file each damage should be named by."""
    def first_sample(job) -> Path:
        return next(p for p in sorted((job_dir(cfg, job) / "samples").iterdir()))

    result = [job_dir(cfg, j) / "result.json" for j in jobs]
    text = result[0].read_text()
    result[0].write_text(text[: len(text) // 2])  # truncated
    result[1].write_text("")  # empty
    maps = first_sample(jobs[2]) / "maps.npz"
    data = bytearray(maps.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other checksum
    maps.write_bytes(bytes(data))
    (first_sample(jobs[3]) / "generated.png").unlink()  # missing
    inputs = job_dir(cfg, jobs[4]) / "set_inputs.npz"
    inputs.write_bytes(inputs.read_bytes()[:100])  # truncated
    return {jobs[0].key: "result.json", jobs[1].key: "result.json", jobs[2].key: "maps.npz",
            jobs[3].key: "generated.png", jobs[4].key: "set_inputs.npz"}


def _cli(*args, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args, "--config", str(config)], cwd=REPO_ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=1800)


def test_damaged_store_is_reported_verified_and_regenerated(tiny_model, tmp_path):
    data = smoke_dict(tmp_path, tiny_model, shard_size=1, batch_size=1, max_samples=6)
    config = write_config(data, tmp_path / "config.yaml")
    cfg = RunConfig.load(config)
    summary = execute(cfg, scheduler="inline")
    assert (summary.jobs, summary.finished) == (6, 6)
    clean = report_tables(cfg)
    jobs = plan_jobs(cfg).jobs
    for j in jobs:  # every file a job wrote is recorded, and checks out
        record = check_job(job_dir(cfg, j))
        assert {"result.json"} | set(record.files) >= {"set_inputs.npz"}
        assert len(record.files) == 1 + 4 * len(j.indices)
    damaged = _damage(cfg, jobs)
    untouched = {k: v for k, v in result_stats(cfg).items() if k not in damaged}
    with pytest.raises(DamagedJob, match="empty"):
        read_record(job_dir(cfg, jobs[1]) / "result.json")

    # report: every page written; each damaged job a failure row naming its file
    out = _cli("report", config=config)
    assert out.returncode == 0, out.stderr[-3000:]
    failures = (cfg.out_dir / "results" / "failures.csv").read_text()
    for key, name in damaged.items():
        line = next((ln for ln in failures.splitlines() if key in ln), "")
        assert name in line and "damaged" in line, (key, failures)
    assert "damaged" in (tmp_path / "leaderboards" / "viton_hd.md").read_text()
    # ls names them too (job and file), and does not fail
    out = _cli("ls", config=config)
    assert out.returncode == 0 and "5 failed job(s)" in out.stdout, out.stdout + out.stderr
    for key, name in damaged.items():
        assert any(key in ln and name in ln and "damaged" in ln for ln in out.stdout.splitlines()), key

    # verify: names all five with their files, moves them aside, exits non-zero
    out = _cli("verify", config=config)
    assert out.returncode == 1, out.stdout + out.stderr
    for key, name in damaged.items():
        assert any(key in ln and name in ln for ln in out.stderr.splitlines()), (key, out.stderr)
    quarantined = list((cfg.out_dir / "store" / "quarantine").glob("*/*/*/*/shard-*"))
    assert len(quarantined) == 5 and all((q / "reason.txt").is_file() for q in quarantined)
    assert _cli("verify", config=config).returncode == 0

    # run: regenerates exactly the damaged jobs; the tables equal the undamaged store's
    out = _cli("run", "--scheduler", "inline", config=config)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jobs: 6 (1 already stored, 5 run, 0 failed)" in out.stdout
    after = result_stats(cfg)
    assert {k: after[k] for k in untouched} == untouched
    assert report_tables(cfg) == clean


def test_run_sets_aside_a_damaged_job_without_verify(tiny_model, tmp_path):
    cfg = RunConfig.from_dict(smoke_dict(tmp_path, tiny_model))
    execute(cfg, scheduler="inline")
    clean = report_tables(cfg)
    job = plan_jobs(cfg).jobs[0]
    (job_dir(cfg, job) / "result.json").write_text("{not json")
    summary = execute(cfg, scheduler="inline")
    assert (summary.skipped, summary.finished) == (1, 1)
    moved = next((cfg.out_dir / "store" / "quarantine").rglob("result.json"))
    assert moved.read_text() == "{not json"  # kept, never deleted
    assert "not valid JSON" in (moved.parent / "reason.txt").read_text()
    assert report_tables(cfg) == clean
    json.loads((job_dir(cfg, job) / "result.json").read_text())
    shutil.rmtree(cfg.out_dir / "store" / "quarantine")
