"""The job store: how a job is keyed, where its outputs live, how ``report`` finds them (``docs/store.md``).

Layout under a run's output folder::

    store/<task>-v<version>/<model>-<model hash>/<generation key>/shard-<first>-<last>-<samples hash>/
        result.json              the job's record (:class:`JobRecord`): per-sample scores and the size and SHA-256
                                 of every file below (written last, atomically: a readable one whose files
                                 match = job done)
        set_inputs.npz           what the set metrics need (Inception features, LPIPS per sample)
        failed.json              the last failure of this job (removed when it succeeds)
        samples/<id>/generated.png, reference.png, maps.npz, overlay.png
    store/quarantine/<time>/<job key>/   damaged jobs set aside (never deleted), with ``reason.txt``

A key holds only what changes the stored outputs: task and its version, the model's identity (adapter,
files, options), the generation key (sampling, capture, seed, generation-code version) and the samples
(ids and a digest of their files). Scoring settings, bootstrap counts, tolerances, the other tasks and
models of a config, output places and the cluster never enter it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path

from benchmark.errors import UserError

# Bumped whenever generation or capture changes the stored outputs (part of every generation key, so a bump
# regenerates every job). A new per-sample quality metric needs no bump: the next run computes it for finished
# jobs from their stored images (``JobRecord.sample_metrics``).
GENERATION_CODE_VERSION = 2
# Version of the ``result.json`` layout (:class:`JobRecord`); a record without ``schema`` is version 1.
SCHEMA_VERSION = 2

RESULT = "result.json"
PLAN_FAILURES = "plan_failures.json"  # in the run's output folder: task entries the last run could not plan
PLAN = "plan.json"  # in the run's output folder: per stored state, the sample ids it needs to be complete
RUN_DEVICE = "device.json"  # in the run's output folder: the device type the last run's jobs are keyed for
FAILED = "failed.json"
QUARANTINE = "quarantine"  # under the store: damaged jobs moved aside
# What every result.json holds; a record without one of these is damaged (a truncated or foreign file).
RECORD_KEYS = ("key", "task", "task_version", "model", "model_hash", "generation_key", "samples", "sample_ids",
               "indices", "failures", "rows", "imacs_terms", "protocol", "run_id", "finished_at")


# The per-sample quality metrics every job of schema 1 evaluated: what such a record's ``sample_metrics`` reads as.
SCHEMA_1_SAMPLE_METRICS = ("masked_psnr", "masked_ssim", "psnr", "ssim")


class NewerRecord(UserError):
    """A ``result.json`` written by a newer version of the benchmark than this one reads (never quarantined: the
    job is intact, this code is too old for it)."""


@dataclass
class JobRecord:
    """What a finished job stored (its ``result.json``): written by the job, read by every reader through
    :meth:`from_dict` / :func:`read_record`. The JSON keys are the field names, plus ``schema``.

    Nested parts stay plain JSON (per sample; a store holds millions of them): ``samples``
    ``[{sample_id, index}]`` of the samples that loaded, in job order; ``failures`` ``[{sample_id, file,
    error}]`` of those that did not; ``rows`` ``[{sample_id, metric, value, note}]``; ``imacs_terms``
    ``{thresholds: [T], samples: {id: {side: {a: [T], b: [T]} or {note}}}}``; ``files``
    ``{path relative to the job folder: [size, SHA-256]}``."""

    _: KW_ONLY
    key: str
    task: str
    task_version: int
    model: str
    adapter: str = ""
    model_hash: str
    generation_key: str
    loaded_weights: str | None = None  # hash of the weights as the adapter loaded them (ModelAdapter.identity)
    run_id: str
    finished_at: str  # ISO 8601, UTC
    samples: list[dict]
    sample_ids: list[str]
    indices: list[int]
    samples_hash: str = ""
    sample_digests: dict[str, str] = field(default_factory=dict)
    n_samples: int | None = None  # the samples that loaded (None: len(samples))
    failures: list[dict]
    rows: list[dict]
    imacs_terms: dict
    protocol: str  # generation | one_pass
    timesteps: list[int] = field(default_factory=list)
    model_evaluations_per_sample: int | None = None
    sampling: dict = field(default_factory=dict)  # num_inference_steps, guidance_scale, eta
    device: str = ""
    accelerator: str = ""  # cpu | mps | cuda:<GPU name>
    batch_size: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage of the job
    store: dict = field(default_factory=lambda: {"maps_dtype": "float32", "images": "all"})
    files: dict[str, list] = field(default_factory=dict)
    # The registered per-sample quality metrics evaluated for every sample (a metric whose needs a sample does
    # not meet has no row); a quality metric registered later is computed by the next run from the stored images.
    sample_metrics: list[str] = field(default_factory=list)
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict, repr=False)  # keys this code does not know, written back as they were

    def __post_init__(self):
        if self.n_samples is None:
            self.n_samples = len(self.samples)

    @classmethod
    def from_dict(cls, data: dict, source: str | Path = "result.json") -> "JobRecord":
        """The record of a ``result.json``'s JSON object; older schemas are converted (fields they lack take
        their defaults). :class:`NewerRecord` naming ``source`` for a schema newer than :data:`SCHEMA_VERSION`;
        :class:`KeyError` / :class:`TypeError` for an object that is not a job record."""
        schema = data.get("schema", 1)
        if not isinstance(schema, int):
            raise TypeError(f"schema is {schema!r}, not an integer")
        if schema > SCHEMA_VERSION:
            raise NewerRecord(f"{source}: written with job record schema {schema}, newer than the {SCHEMA_VERSION} "
                              "this version of the benchmark reads; update the benchmark to read this store")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        missing = [k for k in RECORD_KEYS if k not in values]
        if missing:
            raise KeyError(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if schema == 1:  # one pass records no quality metric
            values["sample_metrics"] = list(SCHEMA_1_SAMPLE_METRICS) if data["protocol"] == "generation" else []
        values["schema"] = SCHEMA_VERSION
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        """The JSON object of ``result.json``: every field (the unknown keys it was read with last)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, source: str | Path = "result.json") -> "JobRecord":
        return cls.from_dict(json.loads(text), source)

    def sample_index(self) -> dict[str, int]:
        """Sample id -> dataset index of the samples that loaded."""
        return {s["sample_id"]: s["index"] for s in self.samples}


class DamagedJob(Exception):
    """A stored job whose ``result.json`` cannot be read or whose files are not what the job wrote."""

    def __init__(self, job_dir: Path, problems: list[str]):
        self.job_dir, self.problems = Path(job_dir), problems
        super().__init__(f"{self.job_dir}: {'; '.join(problems)}")


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a reader sees the old file or the
    whole new one, never a part (a crash leaves at most a ``*.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)
    os.replace(tmp, path)
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_manifest(job_dir: Path, paths: list[Path]) -> dict[str, list]:
    """``{path relative to the job folder: [size in bytes, SHA-256, mtime in ns]}`` of the files a job wrote. The
    modification time is what a reader with remembered digests trusts (:func:`file_problems`), as
    :class:`DigestCache` trusts its own entries: the report does not hash again what the job has just hashed."""
    job_dir, out = Path(job_dir), {}
    for p in sorted(paths):
        st = Path(p).stat()
        out[Path(p).relative_to(job_dir).as_posix()] = [st.st_size, file_sha256(p), st.st_mtime_ns]
    return out


def read_record(path: Path) -> JobRecord:
    """The record of a ``result.json``; :class:`DamagedJob` (naming the file and why) when it is unreadable, not
    JSON, or not a job record; :class:`NewerRecord` (naming the file) when a newer benchmark wrote it."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedJob(path.parent, [f"{path.name} unreadable ({type(err).__name__}: {err})"]) from None
    if not text.strip():
        raise DamagedJob(path.parent, [f"{path.name} is empty"])
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DamagedJob(path.parent, [f"{path.name} is not valid JSON ({err}; {len(text)} bytes)"]) from None
    if not isinstance(data, dict):
        raise DamagedJob(path.parent, [f"{path.name} is not a job record (a JSON {type(data).__name__})"])
    try:
        return JobRecord.from_dict(data, path)
    except (KeyError, TypeError) as err:
        why = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise DamagedJob(path.parent, [f"{path.name} is not a job record ({why})"]) from None


def write_record(job_dir: Path, record: JobRecord) -> Path:
    """Write ``record`` as the job's ``result.json``, atomically (the last file a job writes)."""
    return write_atomic(Path(job_dir) / RESULT, record.to_json())


def file_problems(job_dir: Path, record: JobRecord, digests: "DigestCache | None" = None) -> list[str]:
    """What differs between the files a job recorded (``record.files``) and the folder: one line per missing
    file, size or checksum. ``digests``: remembered digests (by size and mtime) instead of reading every file; a
    file whose size and mtime are still those the job recorded beside its checksum counts as remembered too.
    Without ``digests`` (``verify``) every file is read."""
    problems = []
    for rel, (size, sha, *written) in sorted(record.files.items()):
        path = Path(job_dir) / rel
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        if st.st_size != size:
            problems.append(f"{rel} has {st.st_size} bytes, the job wrote {size}")
        elif digests is not None and written and written[0] == st.st_mtime_ns:
            continue  # untouched since the job hashed it
        elif (digests.digest(path) if digests is not None else file_sha256(path)) != sha:
            problems.append(f"{rel} does not match its recorded SHA-256")
    return problems


def check_job(job_dir: Path, digests: "DigestCache | None" = None) -> JobRecord:
    """The job's record when its ``result.json`` reads and every recorded file matches; else :class:`DamagedJob`."""
    record = read_record(Path(job_dir) / RESULT)
    problems = file_problems(job_dir, record, digests)
    if problems:
        raise DamagedJob(job_dir, problems)
    return record


def quarantine(store: Path, job_dir: Path, problems: list[str]) -> Path:
    """Move a damaged job folder under ``store/quarantine/<time>/`` (same relative key), with ``reason.txt``;
    the next run regenerates the job. Returns the new place."""
    store, job_dir = Path(store), Path(job_dir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = store / QUARANTINE / stamp / job_dir.relative_to(store)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(job_dir), str(dest))
    (dest / "reason.txt").write_text("\n".join(problems) + "\n")
    return dest


def stored_jobs(store: Path) -> list[Path]:
    """Every job folder of the store that has a ``result.json`` (quarantine excluded)."""
    store = Path(store)
    return sorted(p.parent for p in store.glob(f"*/*/*/shard-*/{RESULT}") if p.parts[len(store.parts)] != QUARANTINE)


def short_hash(obj, n: int = 12) -> str:
    """Hex digest of a JSON-serialisable object (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


class DigestCache:
    """SHA-256 of files, remembered by (path, size, mtime): a second plan of the same files only stats them.

    Kept in the user cache folder (``$I2AM_CACHE_DIR`` or ``~/.cache/i2am-bench``), never in the repository."""

    def __init__(self, path: Path | None = None):
        root = Path(os.environ.get("I2AM_CACHE_DIR", Path.home() / ".cache" / "i2am-bench"))
        self.path = path or root / "file_digests.json"
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def digest(self, path: Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        key, stamp = str(path), [st.st_size, st.st_mtime_ns]
        hit = self.entries.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        self.entries[key] = stamp + [file_sha256(path)]
        self.dirty = True
        return self.entries[key][2]

    def tree(self, root: Path, skip: tuple[str, ...] = ()) -> str:
        """Digest of every file under ``root`` (a folder or one file): relative names and contents."""
        root = Path(root)
        files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file() and p.name not in skip)
        return short_hash([[str(p.relative_to(root)) if root.is_dir() else p.name, self.digest(p)] for p in files], 16)

    def save(self) -> None:
        """Write the cache when it changed, forgetting files that no longer exist (temporary stores)."""
        if self.dirty:
            self.entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}
            try:
                write_atomic(self.path, json.dumps(self.entries))
                self.dirty = False
            except OSError:  # a read-only home only costs re-hashing next time
                pass


def model_dir(store: Path, task: str, version: int, model: str, model_hash: str) -> Path:
    return store / f"{task}-v{version}" / f"{model}-{model_hash}"


def shard_name(indices: tuple[int, ...], samples_hash: str) -> str:
    span = f"{indices[0]}-{indices[-1]}" if indices else "none"
    return f"shard-{span}-{samples_hash}"


def _model_dirs(store: Path, task: str, version: int, model: str) -> list[Path]:
    """The ``<model>-<model hash>`` folders of one model name under a task version (one per set of weights)."""
    root = store / f"{task}-v{version}"
    return [d for d in root.iterdir() if d.name.rsplit("-", 1)[0] == model] if root.is_dir() else []


def stored_results(store: Path, task: str, version: int, model: str, generation_key: str) -> list[Path]:
    """Every finished job (its ``result.json``) of one (task version, model name, generation key), across model
    hashes; a directory listing, no dataset and no weights needed."""
    return [p for mdir in _model_dirs(store, task, version, model)
            for p in sorted((mdir / generation_key).glob(f"shard-*/{RESULT}"))]


def stored_failures(store: Path, task: str, version: int, model: str, generation_key: str) -> list[dict]:
    """The ``failed.json`` records of jobs of one (task version, model, generation key) that have no result (an
    unreadable one becomes a failure that says so)."""
    out = []
    for mdir in _model_dirs(store, task, version, model):
        for p in sorted((mdir / generation_key).glob(f"shard-*/{FAILED}")):
            if (p.parent / RESULT).is_file():
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError) as err:
                out.append({"key": p.parent.relative_to(store).as_posix(), "n_samples": 0,
                            "error": f"{p} unreadable ({type(err).__name__})"})
    return out
