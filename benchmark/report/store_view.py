"""What the store holds for a config, found from the stored records alone (no dataset, no model files).

For each task entry and model of the config the view takes the stored shards of that (task version, model
name, generation key); when the model's files changed between runs (several model hashes), the newest
records win. Only the first ``max_samples`` samples (by dataset index) are used, whatever shards hold them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import RunConfig, TaskConfig, is_baseline, resolve_path
from benchmark.scoring.terms import imacs_from_terms
from benchmark.store import (PLAN, PLAN_FAILURES, RUN_DEVICE, DamagedJob, DigestCache, JobRecord, check_job,
                             short_hash, stored_failures, stored_results)

FRAME_COLUMNS = ["task", "model", "adapter", "sample_id", "metric", "value", "note"]


@dataclass(frozen=True)
class StoredJob:
    """A finished job as a view uses it: its record, its folder, and the sample ids (stored or failed) the view
    takes from it (the first ``max_samples``, each sample from one job only; every one for an unselected job)."""

    record: JobRecord
    dir: Path
    keep: frozenset[str] = frozenset()

    def kept_samples(self) -> list[tuple[int, dict]]:
        """``(position in the job, {sample_id, index})`` of the stored samples the view uses, in job order."""
        return [(i, s) for i, s in enumerate(self.record.samples) if s["sample_id"] in self.keep]


@dataclass
class StoredModel:
    """One (task, model) of the config as the store has it."""

    task: str
    task_version: int
    model: str
    identity: str  # name, adapter, path and options: what "the same model" means for history
    generation_key: str
    baseline: bool
    protocol: str = "generation"  # or "one_pass"
    jobs: list[StoredJob] = field(default_factory=list)  # the jobs the view uses, newest first
    sample_dirs: list[Path] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)
    job_failures: list[dict] = field(default_factory=list)
    planned: list[str] | None = None  # the sample ids ``run`` planned for this state (None: not known)
    # every intact job of this (task version, name, generation key), whatever its model hash: the states a
    # nightly compares with (:func:`previous_state`) without reading the store again
    intact: list[StoredJob] = field(default_factory=list)

    @property
    def records(self) -> list[JobRecord]:
        """The records of the jobs the view uses."""
        return [j.record for j in self.jobs]

    @property
    def complete(self) -> bool:
        """Every planned sample stored (or failed as a sample) and no job failed or damaged: a state the history
        can hold. Without a plan, a state with records and no failed job counts as complete."""
        if not self.records or self.job_failures:
            return False
        done = set(self.sample_ids) | {f["sample_id"] for r in self.records for f in r.failures}
        return self.planned is None or set(self.planned) <= done

    @property
    def state(self) -> str:
        """Where the state lives in the store: ``<task>-v<version>/<model>-<model hash>/<generation key>``."""
        return f"{self.task}-v{self.task_version}/{self.model}-{self.model_hash}/{self.generation_key}"

    @property
    def run_id(self) -> str:
        """The newest run that produced any of the records used (history compares against runs before it)."""
        return max((r.run_id for r in self.records), default="")

    @property
    def accelerator(self) -> str:
        """What computed the records (``cpu``, ``cuda:<GPU name>``; several joined by ``+``; "" before it was kept)."""
        return "+".join(sorted({r.accelerator for r in self.records}))

    @property
    def samples_key(self) -> str:
        return short_hash(sorted(self.sample_ids))

    @property
    def model_hash(self) -> str:
        return self.jobs[0].record.model_hash if self.jobs else ""


@dataclass
class StoreView:
    cfg: RunConfig
    tasks: dict[str, TaskConfig]
    models: list[StoredModel]  # generation
    plan_failures: list[dict]
    one_pass: list[StoredModel] = field(default_factory=list)  # one-pass attribution of the same models

    def of(self, task: str) -> list[StoredModel]:
        return [m for m in self.models if m.task == task]

    def dirs(self, task: str, model: str) -> list[Path]:
        return next((m.sample_dirs for m in self.models if m.task == task and m.model == model), [])

    @property
    def baselines(self) -> set[str]:
        return {m.model for m in self.models if m.baseline}


def load_view(cfg: RunConfig) -> StoreView:
    """The stored state of ``cfg``. Every job's files are checked against the sizes and checksums its record
    holds (digests remembered by size and mtime); a damaged job is left out and becomes a failure row that names
    the file and why (``run`` regenerates it, ``verify`` sets it aside)."""
    store = cfg.out_dir / "store"
    digests = DigestCache()
    plan = _json(cfg.out_dir / PLAN, dict)
    device_type = _json(cfg.out_dir / RUN_DEVICE, dict).get("device_type", "cpu")  # what the last run keyed
    tasks, models, one_pass = {}, [], []
    for tr in cfg.tasks:
        task = TaskConfig.load(resolve_path(tr.task))
        tasks[task.name] = task
        op = cfg.one_pass_of(tr)
        for spec in tr.models:
            baseline = is_baseline(spec)
            protocols = ["generation"] + (["one_pass"] if op is not None and op.covers(spec) else [])
            for protocol in protocols:
                gen_key = cfg.generation_key(tr, protocol, device_type)
                sm = StoredModel(task.name, task.version, spec.name,
                                 short_hash([spec.name, spec.adapter, spec.path, spec.options]), gen_key, baseline,
                                 protocol)
                intact, damaged = [], []
                for p in stored_results(store, task.name, task.version, spec.name, gen_key):
                    try:
                        intact.append(StoredJob(check_job(p.parent, digests), p.parent))
                    except DamagedJob as err:
                        damaged.append({"key": p.parent.relative_to(store).as_posix(), "n_samples": 0,
                                        "error": f"damaged: {'; '.join(err.problems)} (`run` regenerates this job)"})
                _select(sm, intact, tr.max_samples)
                sm.intact = intact
                sm.job_failures = damaged + stored_failures(store, task.name, task.version, spec.name, gen_key)
                sm.planned = plan.get(sm.state, {}).get(str(tr.max_samples or "all"))
                (models if protocol == "generation" else one_pass).append(sm)
    digests.save()
    return StoreView(cfg, tasks, models, _json(cfg.out_dir / PLAN_FAILURES, list), one_pass)


def _json(path: Path, kind: type):
    """A JSON list or mapping written by ``run`` (``plan_failures.json``, ``plan.json``); a missing or damaged one
    reads as empty (``run`` rewrites it)."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, kind) else kind()
    except (OSError, ValueError):
        return kind()


def _select(sm: StoredModel, jobs: list[StoredJob], max_samples: int | None) -> None:
    """Keep the newest model hash's jobs, the first ``max_samples`` samples, each sample once."""
    if not jobs:
        return
    newest = max(jobs, key=lambda j: j.record.finished_at).record.model_hash
    jobs = sorted((j for j in jobs if j.record.model_hash == newest), key=lambda j: j.record.finished_at,
                  reverse=True)
    seen: dict[str, int] = {}
    used = []
    for job in jobs:
        rec = job.record
        keep = {s["sample_id"] for s in rec.samples if (max_samples is None or s["index"] < max_samples)
                and s["sample_id"] not in seen}
        keep |= {f["sample_id"] for f in rec.failures} - set(seen)  # failed samples are counted once too
        if not keep:
            continue
        for s in rec.samples:
            if s["sample_id"] in keep:
                seen[s["sample_id"]] = s["index"]
        used.append(StoredJob(rec, job.dir, frozenset(keep)))
    sm.jobs, sm.sample_ids = used, sorted(seen, key=seen.get)
    dirs = {sid: job.dir / "samples" / sid for job in used for sid in job.keep}
    sm.sample_dirs = [dirs[sid] for sid in sm.sample_ids if (dirs[sid] / "maps.npz").is_file()]


def previous_state(sm: StoredModel) -> StoredModel | None:
    """The state ``sm`` is compared with by a nightly: the newest other model hash of the same (task version, model
    name, adapter, generation key) whose intact jobs hold every sample of ``sm``, with the same files. None when
    there is none (a first run, or only these weights stored)."""
    by_hash: dict[str, list[StoredJob]] = {}
    for job in sm.intact:
        if job.record.model_hash != sm.model_hash and job.record.adapter == sm.records[0].adapter:
            by_hash.setdefault(job.record.model_hash, []).append(job)
    wanted = _sample_digests(sm)
    for jobs in sorted(by_hash.values(), key=lambda js: max(j.record.finished_at for j in js), reverse=True):
        old = StoredModel(sm.task, sm.task_version, sm.model, sm.identity, sm.generation_key, sm.baseline, sm.protocol)
        _select(old, jobs, None)
        held = _sample_digests(old)
        if all(held.get(sid) == digest for sid, digest in wanted.items()):
            return old
    return None


def _sample_digests(sm: StoredModel) -> dict[str, str]:
    """Sample id -> digest of its files, for the samples ``sm`` has scores of."""
    scored = set(sm.sample_ids)
    return {sid: job.record.sample_digests[sid] for job in sm.jobs for sid in job.keep if sid in scored}


def sample_frame(view: StoreView, models: list[StoredModel] | None = None) -> pd.DataFrame:
    """One row per (task, model, sample, metric): stored values, and IMACS formed from the stored terms at the
    config's (lambda, threshold). ``models``: default the generation ones. Columns :data:`FRAME_COLUMNS`."""
    lam, thr = view.cfg.scoring.lam, view.cfg.scoring.threshold
    rows = []
    for sm in view.models if models is None else models:
        for job in sm.jobs:
            rec = job.record
            base = {"task": sm.task, "model": sm.model, "adapter": rec.adapter}
            kept = {s["sample_id"] for s in rec.samples} & job.keep
            rows += [{**base, **r} for r in rec.rows if r["sample_id"] in kept]
            grid = rec.imacs_terms["thresholds"]
            for sid, sides in rec.imacs_terms["samples"].items():
                if sid not in kept:
                    continue
                for side, terms in sides.items():
                    value, note = imacs_from_terms(terms, lam, thr, grid)
                    rows.append({**base, "sample_id": sid, "metric": f"imacs_{side}", "value": value, "note": note})
            rows += _lpips_rows(job, base, kept)
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["note"] = frame["note"].fillna("")
    return frame.sort_values(["task", "model", "sample_id", "metric"], kind="stable").reset_index(drop=True)


def _lpips_rows(job: StoredJob, base: dict, kept: set[str]) -> list[dict]:
    """LPIPS per sample from the job's ``set_inputs.npz`` (absent when its weights were unavailable)."""
    path = job.dir / "set_inputs.npz"
    if not path.is_file():
        return []
    from benchmark.metrics import SetInputs  # heavy: torch (benchmark.metrics.set_metrics)

    inputs = SetInputs.load(path)
    if inputs.lpips is None:
        return []
    ids = [s["sample_id"] for s in job.record.samples]
    return [{**base, "sample_id": sid, "metric": "lpips", "value": float(v), "note": ""}
            for sid, v in zip(ids, inputs.lpips) if sid in kept]


def failure_frame(view: StoreView) -> pd.DataFrame:
    """Every failure a (task, model) of the config has: failed samples (with the file), failed jobs and task
    entries that could not be planned (with the reason). Columns task, model, kind, sample_id, file, error."""
    rows = []
    for sm in view.models:
        for job in sm.jobs:
            rows += [{"task": sm.task, "model": sm.model, "kind": "sample", **f} for f in job.record.failures
                     if f["sample_id"] in job.keep]
    for sm in view.models + view.one_pass:
        name = sm.model if sm.protocol == "generation" else f"{sm.model} (one-pass)"
        rows += [{"task": sm.task, "model": name, "kind": "job", "sample_id": "", "file": f["key"],
                  "error": f["error"], "n_samples": f.get("n_samples", 0)} for f in sm.job_failures]
    rows += [{"task": f["task"], "model": f["model"], "kind": "task", "sample_id": "", "file": f.get("where", ""),
              "error": f["error"]} for f in view.plan_failures
             if any(m.task == f["task"] and m.model == f["model"] for m in view.models)]
    frame = pd.DataFrame(rows, columns=["task", "model", "kind", "sample_id", "file", "error", "n_samples"])
    frame["n_samples"] = frame["n_samples"].fillna(0).astype(int)
    return frame


def sweep_terms(view: StoreView, task: str, models: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per side: ``a`` and ``b`` (S, T) IMACS terms on the stored threshold grid, the sample ids and models of
    the S samples that have them, and ``thresholds`` (T,). Read from the records, no map is loaded."""
    out = {}
    for side in ("g", "r"):
        found, grid = [], None  # (a, b, sample id, model) per sample
        for sm in view.of(task):
            if sm.model not in models:
                continue
            for job in sm.jobs:
                grid = job.record.imacs_terms["thresholds"]
                for sid, sides in job.record.imacs_terms["samples"].items():
                    t = sides.get(side, {})
                    if sid in job.keep and "a" in t:
                        found.append((t["a"], t["b"], sid, sm.model))
        if found:
            a, b, ids, mods = (np.asarray(column) for column in zip(*found))
            order = np.lexsort((ids, mods))  # by (model, sample): not by finishing order
            out[side] = {"a": a[order], "b": b[order], "sample_id": ids[order], "model": mods[order],
                         "thresholds": np.asarray(grid)}
    return out
