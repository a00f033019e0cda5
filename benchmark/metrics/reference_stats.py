"""Reference-set feature statistics for FID and their on-disk cache.

The cache key is built in ONE place, :meth:`ReferenceSetKey.key`, from what
changes the statistics: dataset, split, image size, clean-fid mode and a hash
of the reference sample ids. Each entry also records a digest of the features
it was computed from, so an entry left by other weights or other image files
under the same ids is recognised as stale. Entries live in a user cache directory
(``$I2AM_CACHE_DIR/ref_stats``, else ``~/.cache/i2am-bench/ref_stats``), never
inside the package, and are written atomically, so a crashed or concurrent
writer never leaves a truncated ``.npz`` behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.store import write_atomic

CACHE_DIR_ENV = "I2AM_CACHE_DIR"

__all__ = ["CACHE_DIR_ENV", "ReferenceSetKey", "ReferenceStats", "ReferenceStatsCache", "default_cache_dir",
           "features_digest"]


def features_digest(features: np.ndarray) -> str:
    """16 hex digits identifying a feature array (its dtype, shape and bytes)."""
    feats = np.ascontiguousarray(features)
    return hashlib.sha256(f"{feats.dtype}{feats.shape}".encode() + feats.tobytes()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Gaussian statistics of a feature set (n, d): ``mu`` (d,) and ``sigma`` (d, d), and the features' digest."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    digest: str

    @classmethod
    def from_features(cls, features: np.ndarray) -> ReferenceStats:
        """Mean and ``np.cov(rowvar=False)`` of features (n >= 2, d), as ``cleanfid.fid.fid_from_feats`` does."""
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[0] < 2:
            raise ValueError(f"need features of shape (n >= 2, d), got {feats.shape}")
        return cls(np.mean(feats, axis=0), np.atleast_2d(np.cov(feats, rowvar=False)), int(feats.shape[0]),
                   features_digest(feats))


def _slug(part: object, limit: int = 48) -> str:
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(part).strip()).strip("-")
    if not text:
        raise ValueError(f"reference-set key parts must be non-empty, got {part!r}")
    # Long parts (a dataset root path) keep their end and a hash, so file names stay short and distinct.
    if len(text) > limit:
        text = text[-(limit - 9):] + "-" + hashlib.sha256(str(part).encode()).hexdigest()[:8]
    return text


def _size(size: object) -> str:
    if isinstance(size, int):
        return f"{size}x{size}"
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        if min(size) <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        return f"{size[0]}x{size[1]}"
    # e.g. ["native"]: images used at their own size
    return _slug("x".join(map(str, size)) if isinstance(size, (tuple, list)) else size)


@dataclass(frozen=True)
class ReferenceSetKey:
    """Names a task's FID/KID reference set.

    Attributes:
        dataset: dataset name, e.g. ``"viton-hd"``.
        split: dataset split, e.g. ``"test"``.
        size: (H, W) of the reference images given to the feature extractor (an int: square;
            a string such as ``"native"`` when they keep their own size).
        sample_ids: ids of the reference samples (order does not matter).
    """

    dataset: str
    split: str
    size: tuple[int, int] | int | str | Sequence[str]
    sample_ids: Sequence[str]

    def key(self, mode: str) -> str:
        """The cache key, e.g. ``"viton-hd__test__512x384__clean__ids-<16 hex>"``; the one place keys are built."""
        if not self.sample_ids:
            raise ValueError("a reference set needs at least one sample id")
        # Sorted: the same set of samples gives the same statistics whatever order the jobs ran in.
        digest = hashlib.sha256("\n".join(sorted(map(str, self.sample_ids))).encode()).hexdigest()[:16]
        return "__".join([_slug(self.dataset), _slug(self.split), _size(self.size), _slug(mode), f"ids-{digest}"])


def default_cache_dir() -> Path:
    """``$I2AM_CACHE_DIR/ref_stats`` if the variable is set, else ``~/.cache/i2am-bench/ref_stats``."""
    env = os.environ.get(CACHE_DIR_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "i2am-bench"
    return (base / "ref_stats").absolute()


class ReferenceStatsCache:
    """``.npz`` files of :class:`ReferenceStats` under ``root`` (default :func:`default_cache_dir`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        if not key or key in (".", "..") or "/" in key or os.sep in key:
            raise ValueError(f"invalid cache key {key!r}; build keys with ReferenceSetKey.key()")
        return self.root / f"{key}.npz"

    def load(self, key: str) -> ReferenceStats | None:
        """The cached statistics for ``key``, or None if absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return ReferenceStats(data["mu"], data["sigma"], int(data["n"]), str(data["digest"]))

    def save(self, key: str, stats: ReferenceStats) -> Path:
        """Write ``stats`` under ``key`` atomically (:func:`benchmark.store.write_atomic`)."""
        buf = io.BytesIO()
        np.savez(buf, mu=stats.mu, sigma=stats.sigma, n=np.asarray(stats.n), digest=np.asarray(stats.digest))
        return write_atomic(self.path(key), buf.getvalue())
