"""The job store: how a job is keyed, where its outputs live, how ``report`` finds them (``docs/store.md``).

Layout under a run's output folder::

    store/<task>-v<version>/<model>-<model hash>/<generation key>/shard-<first>-<last>-<samples hash>/
        result.json              per-sample records (written last, atomically: its presence = job done)
        set_inputs.npz           what the set metrics need (Inception features, LPIPS per sample)
        failed.json              the last failure of this job (removed when it succeeds)
        samples/<id>/generated.png, reference.png, maps.npz, overlay.png

A key holds only what changes the stored outputs: task and its version, the model's identity (adapter,
files, options), the generation key (sampling, capture, seed, generation-code version) and the samples
(ids and a digest of their files). Scoring settings, bootstrap counts, tolerances, the other tasks and
models of a config, output places and the cluster never enter it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Bumped whenever generation, capture or what a job records per sample changes the stored outputs.
GENERATION_CODE_VERSION = 2

RESULT = "result.json"
PLAN_FAILURES = "plan_failures.json"  # in the run's output folder: task entries the last run could not plan
FAILED = "failed.json"


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a reader sees the old file or the
    whole new one, never a part (a crash leaves at most a ``*.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)
    os.replace(tmp, path)
    return path


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
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        self.entries[key] = stamp + [h.hexdigest()]
        self.dirty = True
        return h.hexdigest()

    def tree(self, root: Path, skip: tuple[str, ...] = ()) -> str:
        """Digest of every file under ``root`` (a folder or one file): relative names and contents."""
        root = Path(root)
        files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file() and p.name not in skip)
        return short_hash([[str(p.relative_to(root)) if root.is_dir() else p.name, self.digest(p)] for p in files], 16)

    def save(self) -> None:
        if self.dirty:
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
    """The ``failed.json`` records of jobs of one (task version, model, generation key) that have no result."""
    return [json.loads(p.read_text()) for mdir in _model_dirs(store, task, version, model)
            for p in sorted((mdir / generation_key).glob(f"shard-*/{FAILED}")) if not (p.parent / RESULT).is_file()]
