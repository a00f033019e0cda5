"""A batch-scheduler cluster (benchmark.run.jobqueue), run through dask-jobqueue's local job class: the same job
scripts as SLURM or PBS, started as local processes."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import REPO_ROOT, ConfigError, RunConfig, walltime_seconds
from benchmark.run.jobqueue import cluster_class, cluster_options, lifetime_args, start_cluster
from benchmark.run.runner import execute

from runner_helpers import smoke_config, smoke_dict, stored_rows, write_config

LOCAL = {"jobqueue": "local", "cores": 1, "memory": "4GB"}


def test_a_local_jobqueue_run_stores_the_inline_numbers(tiny_model, tmp_path):
    ref = smoke_config(tmp_path / "inline", tiny_model, device="cpu")
    assert execute(ref, scheduler="inline").failed == []
    # the workers offer GPU=1 as a label (the jobs then ask for it, one at a time per worker) and run on the CPU
    cluster = {**LOCAL, "workers": 1, "worker_extra_args": ["--resources", "GPU=1"]}
    cfg = smoke_config(tmp_path / "jobqueue", tiny_model, device="cpu", cluster=cluster)
    summary = execute(cfg)  # the default scheduler: the batch-job cluster of cluster.jobqueue
    assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])
    assert stored_rows(cfg) == stored_rows(ref) and len(stored_rows(ref)) > 4 * 10
    assert _samples_csv(cfg) == _samples_csv(ref)


def _samples_csv(cfg: RunConfig) -> bytes:
    """``results/samples.csv`` as the report writes it (the rest of the report left out: it takes a minute)."""
    from benchmark.report.store_view import load_view, sample_frame
    from benchmark.report.tables import write_csv

    return write_csv(sample_frame(load_view(cfg)), cfg.out_dir / "results" / "samples.csv").read_bytes()


def test_a_worker_that_leaves_before_its_walltime_hands_its_job_to_a_fresh_batch_job(tmp_path):
    from distributed import Client

    def first_attempt_never_ends(marker: str) -> int:  # defined here: the workers cannot import this module
        """The first call writes ``marker`` and waits until its worker goes; a later call returns its pid."""
        import os
        import time

        if not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            while True:
                time.sleep(0.05)
        return os.getpid()

    # walltime 30 s: the worker leaves after 15 s +/- 8 s (lifetime_args), in the middle of the endless first attempt
    cfg = RunConfig.from_dict(smoke_dict(tmp_path, tmp_path / "model", device="cpu",
                                         cluster={**LOCAL, "walltime": "00:00:30"}))
    cluster = start_cluster(cfg, workers=1)
    client = Client(cluster)
    try:
        marker = tmp_path / "first-attempt"
        future = client.submit(first_attempt_never_ends, str(marker), pure=False)
        pid = future.result(timeout=600)  # the run's own bound is cluster.job_timeout_s; this one only ends a hang
        assert future.status == "finished"
        assert pid != int(marker.read_text())  # run again, by another worker process
        assert cluster.scheduler.tasks[future.key].suspicious == 0  # and not counted towards KilledWorker
    finally:
        client.close()
        cluster.close()


def test_the_job_script_asks_for_the_gpu_resource_and_a_lifetime_inside_the_walltime(tmp_path):
    cluster = {"jobqueue": "slurm", "gpus": "required", "workers": 4, "cores": 8, "memory": "64GB",
               "walltime": "1-02:00:00", "queue": "gpu", "account": "lab", "job_extra_directives": ["--gres=gpu:1"],
               "job_script_prologue": ["module load cuda"], "log_directory": str(tmp_path / "logs")}
    cfg = RunConfig.from_dict(smoke_dict(tmp_path, tmp_path / "model", cluster=cluster))
    options = {k: v for k, v in cluster_options(cfg).items() if k != "scheduler_options"}
    script = cluster_class("slurm").job_cls(scheduler="tcp://10.0.0.1:8786", name="w", **options).job_script()
    lines = script.splitlines()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8", "#SBATCH -t 1-02:00:00",
                 "#SBATCH --gres=gpu:1", f"#SBATCH -o {tmp_path / 'logs'}/bench-smoke-%J.out", "module load cuda"):
        assert line in lines, script
    worker = shlex.split(lines[-1])
    assert worker[worker.index("--resources") + 1] == "GPU=1"
    # 26 h = 93600 s: a margin of 15 min (10% capped), the worker leaves 15 min +/- 7.5 min before the walltime
    assert worker[worker.index("--lifetime") + 1] == "92700s"
    assert worker[worker.index("--lifetime-stagger") + 1] == "450s"
    assert worker[worker.index("--memory-limit", worker.index("--resources")) + 1] == "0"  # none on GPU workers

    for device, gpus, offered in (("cuda", "auto", True), ("auto", "auto", True), ("cpu", "auto", False),
                                  ("auto", "none", False)):
        other = RunConfig.from_dict(smoke_dict(tmp_path, tmp_path / "model", device=device,
                                               cluster={**cluster, "gpus": gpus}))
        assert ("--resources" in cluster_options(other)["worker_extra_args"]) == offered, (device, gpus)


@pytest.mark.parametrize("walltime, jobqueue, seconds, lifetime, stagger", [
    ("02:00:00", "pbs", 7200, 6480, 360),      # margin 10% = 12 min
    ("00:05:00", "sge", 300, 180, 60),         # margin at least 2 min
    ("00:03", "lsf", 180, 90, 45),             # LSF is HH:MM; margin at most half the walltime
    ("3-00:00:00", "slurm", 259200, 258300, 450),
])
def test_walltimes_and_lifetimes(walltime, jobqueue, seconds, lifetime, stagger):
    assert walltime_seconds(walltime, jobqueue) == seconds
    assert lifetime_args(seconds) == ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    assert lifetime + stagger < seconds


@pytest.mark.parametrize("cluster, message", [
    ({"jobqueue": "slurn", "memory": "8GB"}, "cluster.jobqueue: expected one of ['slurm', 'pbs', 'sge', 'lsf', "
                                             "'local'], got 'slurn'; did you mean 'slurm'?"),
    ({"jobqueue": "slurm"}, "cluster.memory: expected the memory of one batch job, such as 64GB, got None"),
    ({"jobqueue": "slurm", "memory": "lots"}, "got 'lots'"),
    ({"jobqueue": "slurm", "memory": "8GB", "walltime": "2h"}, "cluster.walltime: expected a time [D-]HH:MM:SS"),
    ({"jobqueue": "lsf", "memory": "8GB", "walltime": "02:00:00"}, "cluster.walltime: expected a time HH:MM"),
    ({"jobqueue": "pbs", "memory": "8GB", "cores": 2, "processes": 4}, "cluster.processes: 4 worker processes"),
    ({"jobqueue": "pbs", "memory": "8GB", "cores": 0}, "cluster.cores: expected an integer >= 1, got 0"),
    ({"jobqueue": "sge", "memory": "8GB", "worker_extra_args": "--lifetime 1h"}, "expected a list of strings"),
    ({"jobqueue": "slurm", "memory": "8GB", "scheduler": "tcp://h:1"}, "set jobqueue or scheduler, not both"),
    ({"jobqueue": "local", "memory": "8GB", "job_script_prologue": ["x"]}, "job_script_prologue"),
    ({"jobqueue": "pbs", "memory": "8GB", "threads_per_worker": 4}, "cluster.threads_per_worker: a batch job's"),
    ({"walltime": "01:00:00"}, "cluster.walltime: describes a batch job, used only with cluster.jobqueue"),
    ({"jobqueue": "slurm", "memory": "8GB", "wall_time": "1:00:00"}, "key 'wall_time'; did you mean 'walltime'"),
])
def test_a_bad_jobqueue_setting_is_a_config_error_that_names_it(tmp_path, cluster, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(smoke_dict(tmp_path, tmp_path / "model", cluster=cluster))
    assert message in str(err.value)


def test_a_bad_jobqueue_is_one_line_and_exit_2(tiny_model, tmp_path, capsys):
    config = write_config(smoke_dict(tmp_path, tiny_model, cluster={"jobqueue": "slurn", "memory": "8GB"}),
                          tmp_path / "config.yaml")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "did you mean 'slurm'?" in err, err


def test_a_batch_scheduler_that_this_machine_cannot_submit_to_is_one_line_and_exit_2(tiny_model, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    config = write_config(smoke_dict(tmp_path, tiny_model, cluster={"jobqueue": "slurm", "memory": "8GB"}),
                          tmp_path / "config.yaml")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == "error: cluster.jobqueue slurm: 'sbatch' is not on this machine's PATH; run from a node that " \
                  "submits slurm jobs, or remove cluster.jobqueue\n"


def test_the_slurm_nightly_example_loads():
    cfg = RunConfig.load(REPO_ROOT / "configs" / "nightly_slurm.yaml")
    assert (cfg.cluster.jobqueue, cfg.cluster.workers, cfg.cluster.gpus) == ("slurm", 8, "required")
    assert walltime_seconds(cfg.cluster.walltime, "slurm") == 12 * 3600
