"""Results of slow, pure report steps kept next to the frames, keyed by a digest of their inputs.

A rebuilt report whose store and settings did not change finds every analysis here instead of redoing its
permutation tests and bootstraps; any change of an input frame, a setting or :data:`VERSION` misses.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd

from benchmark.store import write_atomic

T = TypeVar("T")
VERSION = 1  # bump when an analysis changes its output for the same inputs


def digest(*parts) -> str:
    """Digest of frames (their contents, index and columns) and JSON-serialisable values."""
    h = hashlib.sha256(str(VERSION).encode())
    for p in parts:
        if isinstance(p, pd.DataFrame):
            h.update(p.to_csv(index=True).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def cached(folder: Path, name: str, key: str, compute: Callable[[], T]) -> T:
    """``compute()``, or its stored result for the same ``key`` (pickled under ``folder``, the run's own)."""
    path = Path(folder) / f"{name}-{key}.pkl"
    if path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            pass
    value = compute()
    write_atomic(path, pickle.dumps(value))
    return value
