"""Whether a run's pages are current: a digest of everything a report reads, kept beside the pages.

The digest covers the resolved config, the name, size and mtime of every file in the store (quarantine
excluded) and of the run's plan files, and the source of the harness (metric weights added later change the store:
``run`` recomputes the stored features first). It is kept in the run folder (``results/pages.json``, per
leaderboard folder), not beside the pages, so committed leaderboards carry nothing machine-specific. A ``run`` with
nothing to do whose digest equals the one recorded when the pages were built skips the report (no analysis or
model library is imported); any change rebuilds. Stat calls only: a few milliseconds for thousands of files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.store import PLAN, PLAN_FAILURES, QUARANTINE, RUN_DEVICE, write_atomic

STAMP = "results/pages.json"  # in the run folder: leaderboard folder -> digest of what its pages were built from
PACKAGE = Path(__file__).resolve().parents[1]


def _stat_tree(h, root: Path, skip: str | None = None) -> None:
    if not root.exists():
        h.update(f"{root}:absent;".encode())
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (skip and Path(dirpath) == root and d == skip)
                             and d != "__pycache__")
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), root)}:{st.st_size}:{st.st_mtime_ns};".encode())


def inputs_digest(cfg: RunConfig) -> str:
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    _stat_tree(h, cfg.out_dir / "store", skip=QUARANTINE)
    for name in (PLAN, PLAN_FAILURES, RUN_DEVICE):
        _stat_tree(h, cfg.out_dir / name)
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def _stamps(cfg: RunConfig) -> dict:
    try:
        stamps = json.loads((cfg.out_dir / STAMP).read_text())
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}


def is_current(cfg: RunConfig, digest: str) -> bool:
    lb = cfg.leaderboard_path
    return _stamps(cfg).get(str(lb)) == digest and (lb / "README.md").is_file()


def mark_current(cfg: RunConfig, digest: str) -> None:
    write_atomic(cfg.out_dir / STAMP, json.dumps({**_stamps(cfg), str(cfg.leaderboard_path): digest}, indent=1))
