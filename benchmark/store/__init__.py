"""The job store: how a job is keyed, where its outputs live, how ``report`` finds them (``docs/store.md``).

Layout under a run's output folder::

    store/<task>-v<version>/<model>-<model hash>/<generation key>/shard-<first>-<last>-<samples hash>/
        result.json              per-sample records and the size and SHA-256 of every file below (written
                                 last, atomically: a readable one whose files match = job done)
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
from pathlib import Path

# Bumped whenever generation, capture or what a job records per sample changes the stored outputs.
GENERATION_CODE_VERSION = 2

RESULT = "result.json"
PLAN_FAILURES = "plan_failures.json"  # in the run's output folder: task entries the last run could not plan
PLAN = "plan.json"  # in the run's output folder: per stored state, the sample ids it needs to be complete
RUN_DEVICE = "device.json"  # in the run's output folder: the device type the last run's jobs are keyed for
FAILED = "failed.json"
QUARANTINE = "quarantine"  # under the store: damaged jobs moved aside
# What every result.json holds; a record without one of these is damaged (a truncated or foreign file).
RECORD_KEYS = ("key", "task", "task_version", "model", "model_hash", "generation_key", "samples", "sample_ids",
               "indices", "failures", "rows", "imacs_terms", "protocol", "run_id", "finished_at")


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
    """``{path relative to the job folder: [size in bytes, SHA-256]}`` of the files a job wrote."""
    job_dir = Path(job_dir)
    return {Path(p).relative_to(job_dir).as_posix(): [Path(p).stat().st_size, file_sha256(p)] for p in sorted(paths)}


def read_record(path: Path) -> dict:
    """The record of a ``result.json``; :class:`DamagedJob` (naming the file and why) when it is unreadable, not
    JSON, or not a job record."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedJob(path.parent, [f"{path.name} unreadable ({type(err).__name__}: {err})"]) from None
    if not text.strip():
        raise DamagedJob(path.parent, [f"{path.name} is empty"])
    try:
        record = json.loads(text)
    except ValueError as err:
        raise DamagedJob(path.parent, [f"{path.name} is not valid JSON ({err}; {len(text)} bytes)"]) from None
    missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
    if missing:
        raise DamagedJob(path.parent, [f"{path.name} is not a job record (missing {', '.join(missing[:4])}"
                                       f"{' ...' if len(missing) > 4 else ''})"])
    return record


def file_problems(job_dir: Path, record: dict, digests: "DigestCache | None" = None) -> list[str]:
    """What differs between the files a job recorded (``record["files"]``) and the folder: one line per missing
    file, size or checksum. ``digests``: remembered digests (by size and mtime) instead of reading every file."""
    problems = []
    for rel, (size, sha) in sorted(record.get("files", {}).items()):
        path = Path(job_dir) / rel
        try:
            actual = path.stat().st_size
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        if actual != size:
            problems.append(f"{rel} has {actual} bytes, the job wrote {size}")
        elif (digests.digest(path) if digests is not None else file_sha256(path)) != sha:
            problems.append(f"{rel} does not match its recorded SHA-256")
    return problems


def check_job(job_dir: Path, digests: "DigestCache | None" = None) -> dict:
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
