from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from cleanfid.resize import make_resizer

from benchmark.metrics.fid import (
    CleanFIDExtractor,
    FeatureAccumulator,
    compute_fid_kid,
    extract_features,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
)
from benchmark.metrics.reference_stats import ReferenceStats
from benchmark.metrics.weights import WEIGHTS_DIR_ENV, Unavailable, resolve_metric_weights


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent FID: ||mu1-mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the KID kernel k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def features(seed: int, n: int, d: int = 6, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mixing + shift


def test_frechet_distance_matches_scipy() -> None:
    f1, f2 = features(0, 200), features(1, 150, shift=0.7)
    stats1 = ReferenceStats.from_features(f1)
    stats2 = ReferenceStats.from_features(f2)
    ours = frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)
    assert ours == pytest.approx(scipy_fid(f1, f2), rel=1e-6)
    assert frechet_distance(stats1.mu, stats1.sigma, stats1.mu, stats1.sigma) == pytest.approx(0.0, abs=1e-8)


def test_fid_from_features_records_context() -> None:
    f1, f2 = features(0, 100), features(1, 80, shift=0.3)
    value = fid_from_features(f1, ReferenceStats.from_features(f2), extractor_name="toy", resolution=(32, 32))
    assert value.value == pytest.approx(scipy_fid(f1, f2), rel=1e-6)
    assert (value.name, value.direction, value.n_samples, value.mode) == ("fid", "lower", 100, "clean")
    assert value.implementation.startswith("clean-fid ")
    assert value.extra == {"extractor": "toy", "n_reference": 80}


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_equals_exact_mmd_when_subset_is_adjusted_to_full_sets() -> None:
    f1, f2 = features(2, 30), features(3, 30, shift=0.5)
    est = kernel_inception_distance(f1, f2, num_subsets=5, max_subset_size=1000)
    # Fewer samples than the requested subset: every subset is the full set.
    assert (est.subset_size, est.requested_subset_size, est.adjusted) == (30, 1000, True)
    assert est.value == pytest.approx(numpy_mmd2(f2, f1), rel=1e-9)


def test_kid_subsets_follow_clean_fid_sampling() -> None:
    f1, f2 = features(4, 25), features(5, 60, shift=0.2)
    num_subsets, seed = 7, 11
    before = np.random.get_state()[1].copy()
    est = kernel_inception_distance(f1, f2, num_subsets=num_subsets, max_subset_size=1000, seed=seed)
    assert np.array_equal(np.random.get_state()[1], before), "global numpy RNG state must be restored"
    assert est.subset_size == 25 and est.adjusted

    # clean-fid draws, per subset, m rows of feats2 then m rows of feats1 from numpy's global RNG.
    rs = np.random.RandomState(seed)
    manual = []
    for _ in range(num_subsets):
        x = f2[rs.choice(f2.shape[0], 25, replace=False)]
        y = f1[rs.choice(f1.shape[0], 25, replace=False)]
        manual.append(numpy_mmd2(x, y))
    assert est.value == pytest.approx(np.mean(manual), rel=1e-9)
    assert kernel_inception_distance(f1, f2, num_subsets, 1000, seed).value == est.value


def test_kid_unadjusted_when_enough_samples_and_too_few_raises() -> None:
    est = kernel_inception_distance(features(6, 40), features(7, 40), num_subsets=3, max_subset_size=10)
    assert (est.subset_size, est.adjusted) == (10, False)
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(features(6, 1), features(7, 40))


class ToyFeatures(torch.nn.Module):
    """Deterministic stand-in for Inception: (B, 3, 299, 299) in [0, 255] -> (B, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, kernel_size=9, stride=8)
        self.pool = torch.nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.tanh(self.conv(x / 128.0 - 1.0))).flatten(1)


def images(seed: int, n: int, brightness: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 24, 20, generator=g) * (255.0 - brightness) + brightness).clamp(0, 255)


def test_clean_extractor_reproduces_clean_fid_preprocessing() -> None:
    net = ToyFeatures()
    extractor = CleanFIDExtractor(net, name="toy")
    batch = images(0, 3)
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    manual = torch.stack([torch.from_numpy(resize(img.numpy().transpose(1, 2, 0)).transpose(2, 0, 1)) for img in batch])
    with torch.no_grad():
        expected = net(manual)
    assert extractor.name == "clean-toy"
    torch.testing.assert_close(extractor(batch), expected)


def test_fid_kid_plumbing_with_injected_network() -> None:
    extractor = CleanFIDExtractor(ToyFeatures(), name="toy")
    gen, ref = images(1, 12), images(2, 14, brightness=60.0)
    out = compute_fid_kid(gen, ref, extractor=extractor, batch_size=5, num_subsets=4)

    gen_f, ref_f = extract_features(gen, extractor), extract_features(ref, extractor)
    assert gen_f.shape == (12, 8) and gen_f.dtype == np.float64
    assert out["fid"].value == pytest.approx(scipy_fid(gen_f, ref_f), rel=1e-6)
    assert out["kid"].value == kernel_inception_distance(gen_f, ref_f, num_subsets=4, seed=0).value
    assert out["kid"].extra["subset_size"] == 12 and out["kid"].extra["subset_size_adjusted"]
    assert out["fid"].resolution == (24, 20) and out["fid"].extra["extractor"] == "clean-toy"
    assert out["fid"].value > 0

    # Precomputed reference statistics give the same FID; without raw features KID is reported unavailable.
    from_stats = compute_fid_kid(gen, ReferenceStats.from_features(ref_f, keep_features=False), extractor=extractor)
    assert from_stats["fid"].value == pytest.approx(out["fid"].value, rel=1e-9)
    assert from_stats["kid"].value is None and "raw features" in from_stats["kid"].unavailable


def test_feature_accumulator_shards_agree() -> None:
    extractor = CleanFIDExtractor(ToyFeatures(), name="toy")
    data = images(3, 6)
    whole = FeatureAccumulator(extractor)
    whole.update(data)
    left, right = FeatureAccumulator(extractor), FeatureAccumulator(extractor)
    left.update(data[:2])
    right.update(data[2:])
    left.merge(right)
    np.testing.assert_allclose(left.compute(), whole.compute(), rtol=1e-6)
    assert left.n == 6


def test_extractor_rejects_out_of_range_images() -> None:
    extractor = CleanFIDExtractor(ToyFeatures(), name="toy")
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        extractor(torch.full((1, 3, 8, 8), 300.0))
    with pytest.warns(UserWarning, match="multiply"):
        extractor(torch.rand(1, 3, 8, 8))


def test_missing_inception_reports_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("weights", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    out = compute_fid_kid(images(0, 2), images(1, 2))
    looked = [str(tmp_path / "weights" / "inception-2015-12-05.pt"), str(tmp_path / "tmp" / "inception-2015-12-05.pt")]
    for name in ("fid", "kid"):
        assert out[name].value is None
        assert out[name].extra["looked_for"] == looked
        assert "inception-2015-12-05.pt" in out[name].unavailable
        assert all(p in out[name].unavailable for p in looked)


_INCEPTION = resolve_metric_weights("fid")


@pytest.mark.skipif(
    isinstance(_INCEPTION, Unavailable),
    reason=f"clean-fid Inception weights not present: {getattr(_INCEPTION, 'reason', '')}",
)
def test_real_inception_path() -> None:
    gen, ref = images(4, 4), images(5, 4, brightness=80.0)
    out = compute_fid_kid(gen, ref, num_subsets=2)
    assert out["fid"].extra["extractor"] == "clean-inception-2015-12-05"
    assert np.isfinite(out["fid"].value) and out["fid"].value > 0
    assert out["kid"].extra["subset_size"] == 4


class _FakeInceptionLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


class _FakeInception(torch.nn.Module):
    """Has the interface clean-fid's InceptionV3W expects from the TorchScript file."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _FakeInceptionLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_default_extractor_loads_torchscript_from_weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.metrics.fid import build_clean_extractor

    torch.manual_seed(0)
    fake = _FakeInception()
    torch.jit.script(fake).save(str(tmp_path / "inception-2015-12-05.pt"))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "nowhere"))

    extractor = build_clean_extractor(weights_dir=tmp_path)
    assert isinstance(extractor, CleanFIDExtractor)
    assert extractor.name == "clean-inception-2015-12-05"
    batch = images(6, 2)
    with torch.no_grad():
        # InceptionV3W maps [0, 255] to [-1, 1] before its layers.
        expected = fake.layers((extractor.preprocess(batch) - 128) / 128)
    torch.testing.assert_close(extractor(batch), expected)
