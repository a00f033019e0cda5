"""SIGINT / SIGTERM in every phase of a real ``run`` subprocess, and two runs of one store at once.

Each signal is sent when the store shows the phase (the lock file's phase, a sample folder, a finished job), never
after a fixed sleep. An interrupted run exits 130 / 143 with one message and no traceback, leaves no child process,
and the resumed run ends with the samples and history of an uninterrupted one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from benchmark.config import REPO_ROOT, RunConfig
from benchmark.run.jobs import is_done
from benchmark.run.runner import plan_jobs
from benchmark.store import check_job
from benchmark.store.lock import holder

from runner_helpers import cli_env, smoke_dict, write_config

MODELS = lambda path: [{"name": n, "adapter": "reference_unet", "path": str(path)} for n in ("a", "b")]  # noqa: E731


def _start(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--config", str(config), *extra],
                            cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 900):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _phase(cfg: RunConfig, name: str, proc: subprocess.Popen):
    return lambda: holder(cfg.out_dir).get("phase") == name and holder(cfg.out_dir).get("pid") == proc.pid


def _interrupt(proc: subprocess.Popen, signum: int) -> str:
    """Send ``signum`` to the run; check the exit code, the one message and that no child survives."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "leaked" not in err, err[-3000:]
    message = [ln for ln in err.splitlines() if ln.startswith("interrupted by")]
    assert len(message) == 1 and message[0].endswith("rerun the same command to resume"), err[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"child processes survived: {alive}"
    return message[0]


def _history(cfg: RunConfig) -> pd.DataFrame:
    frame = pd.read_csv(cfg.leaderboard_path / "history.csv").drop(columns=["run_id", "git"])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_interrupts_in_every_phase_then_resume_equals_an_uninterrupted_run(tiny_model, tmp_path):
    data = smoke_dict(tmp_path, tiny_model, models=MODELS(tiny_model), batch_size=1,
                      sampling={"num_inference_steps": 4}, cluster={"workers": 2})
    config = write_config(data, tmp_path / "config.yaml")
    cfg = RunConfig.load(config)
    jobs = plan_jobs(cfg).jobs
    assert [j.model.name for j in jobs] == ["a", "a", "b", "b"]

    # between jobs, inline: SIGINT once both jobs of model a are stored (its rows must still reach the history)
    proc = _start(config, "--scheduler", "inline")
    _wait_for(lambda: all(is_done(cfg, j) for j in jobs[:2]), proc, "model a's jobs")
    message = _interrupt(proc, signal.SIGINT)
    assert "2 of 4 job(s) finished and kept" in message or "3 of 4" in message, message

    # generation on a local Dask cluster: SIGTERM once this run has written a sample
    started = time.time()
    proc = _start(config)
    _wait_for(lambda: any(p.stat().st_mtime > started for p in (cfg.out_dir / "store").rglob("maps.npz")), proc,
              "a sample of this run")
    assert "SIGTERM during generation" in _interrupt(proc, signal.SIGTERM)

    # planning: SIGINT as soon as the lock says so
    proc = _start(config, "--scheduler", "inline")
    _wait_for(_phase(cfg, "planning", proc), proc, "planning")
    _interrupt(proc, signal.SIGINT)

    # report: SIGTERM while the pages are being built
    proc = _start(config, "--scheduler", "inline")
    _wait_for(_phase(cfg, "report", proc), proc, "the report")
    assert "during report" in _interrupt(proc, signal.SIGTERM)
    assert holder(cfg.out_dir) == {}  # released on the way out

    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--config", str(config), "--scheduler",
                          "inline"], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    for j in jobs:
        check_job(cfg.out_dir / "store" / j.key)

    ref_data = {**data, "output_dir": str(tmp_path / "ref" / "run"), "leaderboard_dir": str(tmp_path / "ref" / "lb")}
    ref_config = write_config(ref_data, tmp_path / "ref.yaml")
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--config", str(ref_config), "--scheduler",
                          "inline"], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    ref = RunConfig.load(ref_config)
    assert (cfg.out_dir / "results" / "samples.csv").read_bytes() == (ref.out_dir / "results" / "samples.csv").read_bytes()
    history = _history(cfg)
    assert set(history.model) == {"a", "b"}
    pd.testing.assert_frame_equal(history, _history(ref))


def test_a_second_run_of_a_busy_store_exits_or_waits_and_a_dead_holder_is_taken_over(tiny_model, tmp_path):
    data = smoke_dict(tmp_path, tiny_model, batch_size=1, sampling={"num_inference_steps": 4})
    config = write_config(data, tmp_path / "config.yaml")
    cfg = RunConfig.load(config)

    first = _start(config, "--scheduler", "inline", "--no-report")
    _wait_for(_phase(cfg, "generation", first), first, "generation")
    second = subprocess.run([sys.executable, "-m", "benchmark", "run", "--config", str(config), "--scheduler",
                             "inline"], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 75, second.stderr[-2000:]
    errors = second.stderr.strip().splitlines()
    assert len(errors) == 1 and f"pid {first.pid}" in errors[0] and "in use" in errors[0], second.stderr
    waiting = _start(config, "--scheduler", "inline", "--wait", "--no-report")
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-2000:]
    out, err = waiting.communicate(timeout=900)
    assert waiting.returncode == 0, err[-2000:]
    assert "jobs: 2 (2 already stored, 0 run, 0 failed)" in out
    for j in plan_jobs(cfg).jobs:
        check_job(cfg.out_dir / "store" / j.key)

    # a lock file left by a holder that died (no process holds it any more): taken over, and said so
    (cfg.out_dir / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "command": "run",
                                                   "started": "2026-01-01T00:00:00+00:00", "phase": "generation"}))
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--config", str(config), "--scheduler",
                          "inline", "--no-report"], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "took over the lock of `run` (pid 999999 on elsewhere" in out.stderr, out.stderr
