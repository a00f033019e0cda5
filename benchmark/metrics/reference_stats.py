"""Reference feature statistics for FID/KID and their on-disk cache.

The cache key is built in ONE place, :func:`reference_stats_key`, from
everything that changes the statistics: dataset, split, resolution, feature
extractor and preprocessing version. Entries live in a user cache directory
(``$I2AM_CACHE_DIR/ref_stats`` or ``~/.cache/i2am-bench/ref_stats``), never
inside an installed package, and are written atomically so that a crashed or
concurrent writer never leaves a truncated ``.npz`` behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_DIR_ENV = "I2AM_CACHE_DIR"

__all__ = [
    "CACHE_DIR_ENV",
    "ReferenceStats",
    "ReferenceStatsCache",
    "default_cache_dir",
    "reference_stats_key",
]


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Gaussian statistics (and optionally the raw features) of a reference image set.

    Attributes:
        mu: mean feature, float64 array of shape (d,).
        sigma: unbiased feature covariance (``np.cov``), float64 array of shape (d, d).
        features: the raw features, float64 array of shape (n, d), or None if only
            the Gaussian statistics were kept (KID then cannot be computed).
        n: number of reference samples.
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None
    n: int

    def __post_init__(self) -> None:
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or self.sigma.shape != (d, d):
            raise ValueError(f"expected mu (d,) and sigma (d, d); got {self.mu.shape} and {self.sigma.shape}")
        if self.features is not None and (self.features.ndim != 2 or self.features.shape != (self.n, d)):
            raise ValueError(f"expected features of shape ({self.n}, {d}); got {self.features.shape}")

    @classmethod
    def from_features(cls, features: np.ndarray, keep_features: bool = True) -> ReferenceStats:
        """Statistics of ``features`` (n, d) exactly as clean-fid computes them (mean, ``np.cov``, rowvar=False).

        ``keep_features`` keeps the raw array so KID can be computed later.
        """
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] < 2:
            raise ValueError(f"need features of shape (n >= 2, d), got {feats.shape}")
        return cls(
            mu=np.mean(feats, axis=0),
            sigma=np.atleast_2d(np.cov(feats, rowvar=False)),
            features=feats if keep_features else None,
            n=int(feats.shape[0]),
        )


def _slug(part: object) -> str:
    text = str(part).strip()
    if not text:
        raise ValueError("reference stats key parts must be non-empty")
    # Keep keys filesystem-safe and unambiguous: "__" separates parts.
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def reference_stats_key(
    dataset: str,
    split: str,
    resolution: tuple[int, int] | int,
    extractor: str,
    preprocessing_version: str | int,
) -> str:
    """The single place where reference-statistics cache keys are built.

    Args:
        dataset: dataset name, e.g. ``"viton-hd"``.
        split: dataset split, e.g. ``"test"``.
        resolution: (H, W) of the reference images before feature extraction
            (an int means square).
        extractor: feature extractor name including its mode, e.g. ``"clean-inception-2015-12-05"``.
        preprocessing_version: bumped whenever the image preprocessing changes.

    Returns:
        A filesystem-safe key such as ``"viton-hd__test__1024x768__clean-inception-2015-12-05__v1"``.
    """
    if isinstance(resolution, int):
        h = w = resolution
    else:
        h, w = (int(v) for v in resolution)
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return "__".join(
        [_slug(dataset), _slug(split), f"{h}x{w}", _slug(extractor), "v" + _slug(preprocessing_version)]
    )


def default_cache_dir() -> Path:
    """``$I2AM_CACHE_DIR/ref_stats`` if the variable is set, else ``~/.cache/i2am-bench/ref_stats``."""
    env = os.environ.get(CACHE_DIR_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "i2am-bench"
    return (base / "ref_stats").absolute()


class ReferenceStatsCache:
    """``.npz`` cache of :class:`ReferenceStats` keyed by :func:`reference_stats_key`."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        if "/" in key or os.sep in key or key in ("", ".", ".."):
            raise ValueError(f"invalid cache key {key!r}; build keys with reference_stats_key()")
        return self.root / f"{key}.npz"

    def load(self, key: str) -> ReferenceStats | None:
        """The cached statistics for ``key``, or None if absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            features = data["features"] if "features" in data.files else None
            return ReferenceStats(
                mu=data["mu"].astype(np.float64),
                sigma=data["sigma"].astype(np.float64),
                features=None if features is None else features.astype(np.float64),
                n=int(data["n"]),
            )

    def save(self, key: str, stats: ReferenceStats) -> Path:
        """Write ``stats`` under ``key`` atomically (temporary file in the same directory + ``os.replace``)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"mu": stats.mu, "sigma": stats.sigma, "n": np.asarray(stats.n)}
        if stats.features is not None:
            arrays["features"] = stats.features
        # Same directory as the target so os.replace is an atomic rename on one filesystem.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{key}.", suffix=".npz.tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return path

    def get_or_compute(self, key: str, compute: Callable[[], ReferenceStats]) -> ReferenceStats:
        """Cached statistics for ``key``; computes and stores them on a miss."""
        cached = self.load(key)
        if cached is not None:
            return cached
        stats = compute()
        self.save(key, stats)
        return stats
