from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.metrics.reference_stats import (
    CACHE_DIR_ENV,
    ReferenceStats,
    ReferenceStatsCache,
    default_cache_dir,
    reference_stats_key,
)


def test_key_names_every_part_and_distinguishes_them() -> None:
    key = reference_stats_key("VITON HD", "test", (1024, 768), "clean-inception-2015-12-05", 1)
    assert key == "VITON-HD__test__1024x768__clean-inception-2015-12-05__v1"
    variants = {
        key,
        reference_stats_key("VITON HD", "train", (1024, 768), "clean-inception-2015-12-05", 1),
        reference_stats_key("VITON HD", "test", (512, 384), "clean-inception-2015-12-05", 1),
        reference_stats_key("VITON HD", "test", (1024, 768), "clean-toy", 1),
        reference_stats_key("VITON HD", "test", (1024, 768), "clean-inception-2015-12-05", 2),
    }
    assert len(variants) == 5
    assert reference_stats_key("d", "s", 256, "e", "v2") == "d__s__256x256__e__vv2"
    with pytest.raises(ValueError):
        reference_stats_key("d", "", 256, "e", 1)


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "ref_stats"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "i2am-bench" / "ref_stats"


def test_cache_roundtrip_is_atomic_and_computes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    cache = ReferenceStatsCache()
    key = reference_stats_key("toy", "test", (32, 32), "clean-toy", 1)
    feats = np.random.default_rng(0).normal(size=(20, 4))
    calls = []

    def compute() -> ReferenceStats:
        calls.append(1)
        return ReferenceStats.from_features(feats)

    first = cache.get_or_compute(key, compute)
    second = cache.get_or_compute(key, compute)
    assert len(calls) == 1
    assert cache.path(key) == tmp_path / "ref_stats" / f"{key}.npz"
    # Only the final file remains: the temporary file was renamed into place.
    assert sorted(p.name for p in (tmp_path / "ref_stats").iterdir()) == [f"{key}.npz"]
    np.testing.assert_array_equal(second.mu, feats.mean(0))
    np.testing.assert_array_equal(second.sigma, np.cov(feats, rowvar=False))
    np.testing.assert_array_equal(second.features, first.features)
    assert second.n == 20


def test_cache_without_features_and_bad_keys(tmp_path: Path) -> None:
    cache = ReferenceStatsCache(tmp_path)
    stats = ReferenceStats.from_features(np.eye(3) + 1.0, keep_features=False)
    cache.save("k", stats)
    loaded = cache.load("k")
    assert loaded is not None and loaded.features is None and loaded.n == 3
    assert cache.load("absent") is None
    with pytest.raises(ValueError, match="invalid cache key"):
        cache.path("../escape")
