from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.metrics.reference_stats import (
    CACHE_DIR_ENV,
    ReferenceSetKey,
    ReferenceStats,
    ReferenceStatsCache,
    default_cache_dir,
    features_digest,
)


def test_key_names_every_part_and_distinguishes_them() -> None:
    ids = ["00001", "00002", "00003"]
    key = ReferenceSetKey("VITON HD", "test", (1024, 768), ids).key("clean")
    assert key.startswith("VITON-HD__test__1024x768__clean__ids-") and len(key.rsplit("-", 1)[1]) == 16
    variants = {
        key,
        ReferenceSetKey("VITON HD", "train", (1024, 768), ids).key("clean"),
        ReferenceSetKey("VITON HD", "test", (512, 384), ids).key("clean"),
        ReferenceSetKey("VITON HD", "test", (1024, 768), ids).key("legacy_pytorch"),
        ReferenceSetKey("VITON HD", "test", (1024, 768), ids[:2]).key("clean"),
        ReferenceSetKey("cocoee", "test", (1024, 768), ids).key("clean"),
    }
    assert len(variants) == 6
    # The same samples in another order are the same reference set.
    assert ReferenceSetKey("VITON HD", "test", (1024, 768), ids[::-1]).key("clean") == key
    assert ReferenceSetKey("d", "s", 256, ["a"]).key("clean").startswith("d__s__256x256__clean__")
    # A size that is not (H, W) (images kept at their own size) and a long dataset root still give a short key.
    native = ReferenceSetKey("cocoee:/data/" + "x" * 300 + "/test_bench", "test", ["native"], ["a"]).key("clean")
    assert "__native__" in native and len(native) < 120 and "/" not in native
    with pytest.raises(ValueError, match="non-empty"):
        ReferenceSetKey("d", "", 256, ["a"]).key("clean")
    with pytest.raises(ValueError, match="at least one sample id"):
        ReferenceSetKey("d", "s", 256, []).key("clean")


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "ref_stats"
    assert ReferenceStatsCache().root == tmp_path / "ref_stats"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "i2am-bench" / "ref_stats"


def test_cache_roundtrip_is_atomic(tmp_path: Path) -> None:
    cache = ReferenceStatsCache(tmp_path)
    key = ReferenceSetKey("toy", "test", (32, 32), ["a", "b"]).key("clean")
    feats = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert cache.load(key) is None
    cache.save(key, ReferenceStats.from_features(feats))
    # Only the final file remains: the temporary file was renamed into place.
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"]
    loaded = cache.load(key)
    np.testing.assert_array_equal(loaded.mu, feats.mean(0))
    np.testing.assert_array_equal(loaded.sigma, np.cov(feats, rowvar=False))
    assert loaded.n == 20 and loaded.digest == features_digest(feats) != features_digest(feats + 1)
    with pytest.raises(ValueError, match="invalid cache key"):
        cache.path("../escape")
    with pytest.raises(ValueError, match="n >= 2"):
        ReferenceStats.from_features(feats[:1])
