"""The job record (``result.json``) as a typed :class:`JobRecord`: it round-trips, records of the first schema
(no ``schema`` key) still read, a newer schema is an error naming the file; and a per-sample quality metric
registered after a run is computed by the next run from the stored images, without generating again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import TaskConfig, resolve_path
from benchmark.errors import UserError
from benchmark.registry import SAMPLE_METRICS
from benchmark.run.jobs import job_dir
from benchmark.run.runner import execute, plan_jobs
from benchmark.run.tasks import build_dataset
from benchmark.store import (RESULT, SCHEMA_1_SAMPLE_METRICS, SCHEMA_VERSION, DamagedJob, JobRecord, NewerRecord,
                             check_job, read_record, write_record)

from runner_helpers import result_stats, smoke_config

# A record as the first schema wrote it: no "schema", none of the keys added since (adapter, accelerator, batch
# size, store settings, file manifest, ...).
SCHEMA_1 = {"key": "t-v1/m-abc/g1/shard-0-1-xyz", "task": "t", "task_version": 1, "model": "m", "model_hash": "abc",
            "generation_key": "g1", "run_id": "2026-01-01T00:00:00.000000Z", "finished_at": "2026-01-01T00:00:05+00:00",
            "samples": [{"sample_id": "a", "index": 0}, {"sample_id": "b", "index": 1}], "sample_ids": ["a", "b"],
            "indices": [0, 1], "failures": [], "rows": [{"sample_id": "a", "metric": "psnr", "value": 20.5, "note": ""}],
            "imacs_terms": {"thresholds": [0.0, 0.5], "samples": {"a": {"g": {"a": [0.5, 0.2], "b": [0.1, 0.0]}}}},
            "protocol": "generation", "device": "cpu"}


def test_a_record_round_trips_through_json_with_the_same_keys():
    record = JobRecord.from_dict({**SCHEMA_1, "schema": SCHEMA_VERSION, "adapter": "reference_unet",
                                  "sample_metrics": ["psnr"], "files": {"samples/a/maps.npz": [10, "ff"]}})
    data = json.loads(record.to_json())
    assert JobRecord.from_json(record.to_json()) == record
    assert set(data) == {f for f in JobRecord.__dataclass_fields__ if f != "extra"}
    assert (data["schema"], data["adapter"], data["sample_metrics"]) == (SCHEMA_VERSION, "reference_unet", ["psnr"])
    assert JobRecord.from_dict(data).to_dict() == data


def test_a_first_schema_record_reads_with_defaults_and_keeps_unknown_keys(tmp_path):
    path = tmp_path / RESULT
    path.write_text(json.dumps({**SCHEMA_1, "note_from_elsewhere": [1, 2]}))
    record = read_record(path)
    assert record.schema == SCHEMA_VERSION and record.rows == SCHEMA_1["rows"]
    assert (record.n_samples, record.adapter, record.batch_size, record.files) == (2, "", None, {})
    assert record.store == {"maps_dtype": "float32", "images": "all"}  # the only store there was before the setting
    assert record.sample_metrics == list(SCHEMA_1_SAMPLE_METRICS)  # what every job of that schema computed
    assert JobRecord.from_dict({**SCHEMA_1, "protocol": "one_pass"}).sample_metrics == []
    assert record.to_dict()["note_from_elsewhere"] == [1, 2]


def test_a_newer_schema_is_an_error_naming_the_file_and_a_foreign_file_is_damaged(tmp_path):
    path = tmp_path / "job" / RESULT
    path.parent.mkdir()
    path.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "key": "renamed in the future"}))
    with pytest.raises(NewerRecord, match=f"{path}: written with job record schema {SCHEMA_VERSION + 1}") as err:
        check_job(path.parent)
    assert isinstance(err.value, UserError)  # one line and exit code 2 from the CLI, never quarantined as damaged
    path.write_text(json.dumps({k: v for k, v in SCHEMA_1.items() if k not in ("rows", "samples")}))
    with pytest.raises(DamagedJob, match="is not a job record \\(missing samples, rows\\)"):
        read_record(path)


def _mean_abs_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    return float((pred - target).abs().mean())


@pytest.fixture
def new_metric():
    """A per-sample quality metric registered for one test only."""
    yield lambda: SAMPLE_METRICS.add("test_mae", _mean_abs_error, label="MAE", direction="lower", kind="quality",
                                     needs=("target",))
    SAMPLE_METRICS._entries.pop("test_mae", None)


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), np.float32) / 255  # (H, W, 3)


def test_a_metric_registered_after_a_run_is_computed_from_the_stored_images(tiny_model, tmp_path, new_metric):
    cfg = smoke_config(tmp_path, tiny_model)  # 4 samples, 2 generation jobs
    assert execute(cfg, scheduler="inline").finished == 2
    jobs = plan_jobs(cfg).jobs
    images = {p: (p.read_bytes(), p.stat().st_mtime_ns)
              for j in jobs for p in (job_dir(cfg, j) / "samples").rglob("generated.png")}
    before = read_record(job_dir(cfg, jobs[0]) / RESULT)
    # the second job as stored with `store.images: none` would be: its record says its images were not kept
    other = read_record(job_dir(cfg, jobs[1]) / RESULT)
    other.store = {**other.store, "images": "none"}
    write_record(job_dir(cfg, jobs[1]), other)

    new_metric()
    again = execute(cfg, scheduler="inline")
    assert (again.skipped, again.finished, again.failed, again.metrics_added) == (2, 0, [], 1)
    [unavailable] = again.metrics_unavailable
    assert unavailable["job"] == jobs[1].key and unavailable["metrics"] == ["test_mae"]
    assert "store.images 'none'" in unavailable["error"]
    assert [j.key for j in plan_jobs(cfg).jobs] == [j.key for j in jobs]  # same keys: nothing regenerated
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in images} == images

    record = check_job(job_dir(cfg, jobs[0]))  # rewritten, its manifest still matches every file
    assert record.sample_metrics == before.sample_metrics + ["test_mae"]
    assert record.rows[: len(before.rows)] == before.rows
    got = {r["sample_id"]: r["value"] for r in record.rows[len(before.rows):]}
    assert {r["metric"] for r in record.rows[len(before.rows):]} == {"test_mae"}
    dataset = build_dataset(TaskConfig.load(resolve_path(jobs[0].task_path)))
    for s in record.samples:
        png, target = _png(job_dir(cfg, jobs[0]) / "samples" / s["sample_id"] / "generated.png"), \
            dataset[s["index"]].target
        # the registered function on the stored PNG and the target, and a float64 reference of the same
        assert got[s["sample_id"]] == _mean_abs_error(torch.from_numpy(png).permute(2, 0, 1)[None].contiguous(),
                                                      target[None])
        reference = np.abs(png.astype(np.float64) - target.numpy().transpose(1, 2, 0).astype(np.float64)).mean()
        assert got[s["sample_id"]] == pytest.approx(reference, rel=1e-5)
    assert set(got) == {s["sample_id"] for s in record.samples}

    stats = result_stats(cfg)
    third = execute(cfg, scheduler="inline")  # held now: nothing is computed or rewritten again
    assert (third.finished, third.metrics_added, len(third.metrics_unavailable)) == (0, 0, 1)
    assert result_stats(cfg) == stats
