"""Job keys know the device type; records name the accelerator, and history compares only like with like."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from benchmark.report import history
from benchmark.run.runner import device_type, plan_jobs
from benchmark.store import short_hash

from runner_helpers import smoke_config


def test_the_device_type_is_part_of_every_job_key_and_cpu_keys_stay_as_they_were(tiny_model, tmp_path):
    cfg = smoke_config(tmp_path, tiny_model)
    tr = cfg.tasks[0]
    keys = {d: cfg.generation_key(tr, "generation", d) for d in ("cpu", "cuda", "mps")}
    assert len(set(keys.values())) == 3 and keys["cpu"] == cfg.generation_key(tr)
    assert keys["cuda"] == short_hash({**_key_parts(cfg), "device": "cuda"})
    cpu, cuda = plan_jobs(cfg, device="cpu").jobs, plan_jobs(cfg, device="cuda").jobs
    assert [j.device_type for j in cpu + cuda] == ["cpu"] * 2 + ["cuda"] * 2
    assert [j.indices for j in cpu] == [j.indices for j in cuda]
    assert {j.key for j in cpu}.isdisjoint({j.key for j in cuda})  # a GPU run never takes a CPU shard


def _key_parts(cfg) -> dict:
    import dataclasses

    from benchmark.store import GENERATION_CODE_VERSION

    return {"seed": cfg.seed, "sampling": {}, "capture": dataclasses.asdict(cfg.capture),
            "maps_dtype": cfg.store.maps_dtype, "code": GENERATION_CODE_VERSION}


@pytest.mark.parametrize("device, cluster, cuda_here, expected", [
    ("cpu", {}, True, "cpu"),
    ("cuda:1", {}, False, "cuda"),
    ("auto", {}, True, "cuda"),
    ("auto", {}, False, "cpu"),
    ("auto", {"gpus": "none"}, True, "cpu"),
])
def test_the_device_type_a_run_asks_for(tiny_model, tmp_path, monkeypatch, device, cluster, cuda_here, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_here)
    cfg = smoke_config(tmp_path, tiny_model, device=device, cluster=cluster)
    assert device_type(cfg, "local") == device_type(cfg, "inline") == expected


def test_history_compares_only_runs_on_the_same_accelerator(tmp_path):
    def rows(run_id, accelerator, value):
        row = {"run_id": run_id, "git": "g", "task": "t", "task_version": 1, "model": "m", "identity": "i",
               "model_hash": run_id, "generation_key": "k", "scoring_key": "s", "samples_key": "x", "n": 4,
               "metric": "imacs_g", "value": value, "ci_low": value, "ci_high": value}
        return pd.DataFrame([{**row, history.ACCELERATOR: accelerator}])

    past = pd.concat([rows("1", "cuda:NVIDIA A100-SXM4-80GB", 0.5), rows("2", "cuda:NVIDIA H100 80GB HBM3", 0.25)])
    now = rows("3", "cuda:NVIDIA H100 80GB HBM3", 0.75)
    assert history.deltas(past, now) == {("t", "m", "imacs_g"): pytest.approx(0.5)}  # against run 2, not run 1
    assert history.deltas(past.iloc[:1], now) == {}
    # a state recorded on another accelerator is a new state
    assert len(history.with_unrecorded(past, rows("2", "cuda:NVIDIA A100-SXM4-80GB", 0.25))) == 3
    assert len(history.with_unrecorded(past, rows("2", "cuda:NVIDIA H100 80GB HBM3", 0.25))) == 2
    # a file written before accelerators were kept reads with "" and keeps its rows
    path = tmp_path / "history.csv"
    past.drop(columns=[history.ACCELERATOR]).to_csv(path, index=False)
    assert history.read(path)[history.ACCELERATOR].tolist() == ["", ""]


def test_cluster_gpus_is_one_of_its_values(tiny_model, tmp_path):
    from benchmark.config import ConfigError

    with pytest.raises(ConfigError, match="cluster.gpus: expected one of .*did you mean 'required'"):
        smoke_config(tmp_path, tiny_model, cluster={"gpus": "requird"})
