"""FID and KID following clean-fid, computed in memory from generated tensors.

The distances themselves are clean-fid's own functions
(``cleanfid.fid.frechet_distance`` and ``cleanfid.fid.kernel_distance``); this
module adds input validation, deterministic KID subset sampling, the
small-sample KID subset adjustment, and in-memory feature extraction that
reproduces clean-fid's ``"clean"`` protocol without writing images to a
folder:

* each image (float, [0, 255], (3, H, W)) is resized to 299x299 channel by
  channel with PIL bicubic on float32 data
  (``cleanfid.resize.make_resizer("PIL", False, "bicubic", (299, 299))``),
  exactly as clean-fid's generator path does (no uint8 quantisation; round
  images to integers first if you want numbers comparable to PNG folders);
* the resized batch, still in [0, 255], goes through clean-fid's Inception-v3
  TorchScript (``inception-2015-12-05.pt``), which returns 2048-d pool features.

The Inception file is resolved offline by :mod:`benchmark.metrics.weights`;
when it is missing, :func:`compute_fid_kid` returns :class:`MetricValue`
records with ``value=None`` and a reason naming the file and every path
looked at. Any ``torch.nn.Module`` can be injected as the feature network
(tests use a tiny seeded conv net).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from cleanfid import fid as cleanfid_fid
from cleanfid.resize import make_resizer

from benchmark.metrics.reference_stats import ReferenceStats
from benchmark.metrics.results import MetricValue, package_version
from benchmark.metrics.weights import Unavailable, resolve_metric_weights

CLEAN_MODE = "clean"
CLEAN_SIZE = (299, 299)
INCEPTION_NAME = "inception-2015-12-05"

__all__ = [
    "CLEAN_MODE",
    "INCEPTION_NAME",
    "FeatureExtractor",
    "CleanFIDExtractor",
    "FeatureAccumulator",
    "KIDEstimate",
    "load_clean_inception",
    "build_clean_extractor",
    "extract_features",
    "frechet_distance",
    "kernel_inception_distance",
    "fid_from_features",
    "kid_from_features",
    "compute_fid_kid",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images to feature vectors.

    ``__call__`` takes a float tensor (B, 3, H, W) with values in [0, 255] and
    returns a float tensor (B, d). ``name`` identifies the extractor (and its
    preprocessing) in reference-statistics cache keys; ``mode`` names the
    protocol (e.g. ``"clean"``).
    """

    name: str
    mode: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def load_clean_inception(
    weights_dir: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module | Unavailable:
    """clean-fid's Inception-v3 TorchScript from a local file, or an :class:`Unavailable` record.

    The returned module maps (B, 3, 299, 299) float images in [0, 255] to (B, 2048) features.
    """
    resolved = resolve_metric_weights("fid", weights_dir)
    if isinstance(resolved, Unavailable):
        return resolved
    # Imported lazily: only the real-weights path needs it. download=False keeps
    # clean-fid from ever reaching its urllib download branch.
    from cleanfid.inception_torchscript import InceptionV3W

    path = resolved["inception"]
    with warnings.catch_warnings():
        # The weights only exist as TorchScript; torch's deprecation notice for jit.load is not actionable here.
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated.*", category=FutureWarning)
        model = InceptionV3W(str(path.parent), download=False, resize_inside=False)
    return model.eval().to(device)


class CleanFIDExtractor:
    """clean-fid ``"clean"`` protocol: PIL-bicubic resize to 299x299, then a feature network.

    Args:
        network: module mapping (B, 3, 299, 299) float images in [0, 255] to (B, d)
            (or (B, d, 1, 1)) features: clean-fid's Inception, or any module for tests.
        name: identifies the network in cache keys; the mode is prefixed automatically.
        device: device the network runs on; resizing always happens on the CPU in numpy,
            as in clean-fid.
    """

    mode = CLEAN_MODE

    def __init__(self, network: torch.nn.Module, name: str, device: str | torch.device = "cpu") -> None:
        if not name:
            raise ValueError("an extractor needs a non-empty name: it keys the reference-statistics cache")
        self.network = network.eval().to(device)
        self.device = torch.device(device)
        self.name = f"{CLEAN_MODE}-{name}"
        self._resize = make_resizer("PIL", False, "bicubic", CLEAN_SIZE)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 255] -> (B, 3, 299, 299) float32 in [0, 255] on the CPU."""
        _check_images_255(images)
        arrays = images.detach().to("cpu", torch.float32).numpy().transpose(0, 2, 3, 1)
        resized = np.stack([self._resize(a) for a in arrays]).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(resized, dtype=np.float32))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 255] -> (B, d) float features (on the CPU)."""
        feats = self.network(self.preprocess(images).to(self.device))
        return feats.reshape(feats.shape[0], -1).float().cpu()


def build_clean_extractor(
    weights_dir: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> CleanFIDExtractor | Unavailable:
    """The real clean-fid extractor (local Inception weights only), or :class:`Unavailable`."""
    network = load_clean_inception(weights_dir, device)
    if isinstance(network, Unavailable):
        return network
    return CleanFIDExtractor(network, name=INCEPTION_NAME, device=device)


def _check_images_255(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not torch.is_floating_point(images):
        raise TypeError(f"expected a float tensor with values in [0, 255], got dtype {images.dtype}")
    if images.numel() == 0:
        return
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 255.0:
        raise ValueError(f"expected values in [0, 255] (clean-fid convention), got range [{lo:.4g}, {hi:.4g}]")
    if hi <= 1.0:
        warnings.warn(
            "all image values are <= 1; FID/KID extractors expect [0, 255] "
            "(multiply [0, 1] images by 255)",
            stacklevel=3,
        )


def _as_batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        return images.split(batch_size)
    return images


def extract_features(
    images: torch.Tensor | Iterable[torch.Tensor], extractor: FeatureExtractor, batch_size: int = 32
) -> np.ndarray:
    """Features of ``images`` as a float64 array (N, d).

    Args:
        images: a tensor (N, 3, H, W) or an iterable of batches (B, 3, H, W);
            float, values in [0, 255].
        extractor: see :class:`FeatureExtractor`.
        batch_size: split size when ``images`` is a single tensor.
    """
    acc = FeatureAccumulator(extractor)
    for batch in _as_batches(images, batch_size):
        acc.update(batch)
    return acc.compute()


class FeatureAccumulator:
    """Collects extractor features batch by batch (torchmetrics-style ``update``/``merge``/``compute``).

    State is the list of per-batch feature arrays; ``merge`` concatenates
    another accumulator's state, so features gathered on several shards give
    exactly the same statistics as one pass (order does not affect FID/KID).
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        self.extractor = extractor
        self._chunks: list[np.ndarray] = []

    @property
    def n(self) -> int:
        return sum(c.shape[0] for c in self._chunks)

    def update(self, images: torch.Tensor) -> None:
        """Add a batch (B, 3, H, W) of float images in [0, 255]."""
        feats = self.extractor(images)
        self._add(np.asarray(feats.detach().cpu().numpy(), dtype=np.float64))

    def update_features(self, features: np.ndarray) -> None:
        """Add precomputed features (B, d)."""
        self._add(np.asarray(features, dtype=np.float64))

    def _add(self, feats: np.ndarray) -> None:
        if feats.ndim != 2:
            raise ValueError(f"features must be (B, d), got {feats.shape}")
        if self._chunks and feats.shape[1] != self._chunks[0].shape[1]:
            raise ValueError(f"feature dimension changed from {self._chunks[0].shape[1]} to {feats.shape[1]}")
        self._chunks.append(feats)

    def merge(self, other: FeatureAccumulator) -> None:
        if other.extractor.name != self.extractor.name:
            raise ValueError(f"cannot merge features of {other.extractor.name!r} into {self.extractor.name!r}")
        for chunk in other._chunks:
            self._add(chunk)

    def reset(self) -> None:
        self._chunks.clear()

    def compute(self) -> np.ndarray:
        """All features so far, float64 (N, d)."""
        if not self._chunks:
            raise ValueError("no features accumulated")
        return np.concatenate(self._chunks, axis=0)


def _as_features(name: str, features: np.ndarray) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (n, d), got {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return feats


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), via ``cleanfid.fid.frechet_distance``.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.

    Args:
        mu1, mu2: mean features, shape (d,).
        sigma1, sigma2: covariances, shape (d, d).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    with warnings.catch_warnings():
        # clean-fid passes scipy's deprecated `disp` to sqrtm; the result is unaffected.
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated.*", category=DeprecationWarning)
        return float(cleanfid_fid.frechet_distance(mu1, sigma1, mu2, sigma2))


@dataclass(frozen=True)
class KIDEstimate:
    """KID (unbiased squared MMD, cubic polynomial kernel) averaged over random subsets.

    Attributes:
        value: KID in native units (not scaled).
        subset_size: subset size actually used, ``min(n1, n2, requested_subset_size)``.
        requested_subset_size: ``max_subset_size`` as requested.
        num_subsets: number of subsets averaged.
        seed: seed of the subset sampling.
    """

    value: float
    subset_size: int
    requested_subset_size: int
    num_subsets: int
    seed: int

    @property
    def adjusted(self) -> bool:
        """True when there were fewer samples than the requested subset size."""
        return self.subset_size < self.requested_subset_size


def kernel_inception_distance(
    feats1: np.ndarray,
    feats2: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> KIDEstimate:
    """KID between two feature sets via ``cleanfid.fid.kernel_distance``.

    Each of ``num_subsets`` rounds draws ``m`` rows without replacement from
    each set and computes the unbiased MMD^2 with kernel
    ``k(x, y) = (x.y / d + 1)^3``; the result is the mean over rounds. When a
    set has fewer than ``max_subset_size`` rows, ``m`` drops to the smaller set
    size (recorded in ``subset_size``); if then ``m`` equals both sizes every
    round uses the full sets and the estimate is the exact unbiased MMD^2.

    Args:
        feats1, feats2: features (n1, d) and (n2, d), any real values.
        num_subsets: rounds to average.
        max_subset_size: requested subset size.
        seed: seeds the subset sampling. clean-fid draws from numpy's global
            RNG; its state is saved and restored around the call, so this is
            deterministic but not thread-safe.
    """
    f1, f2 = _as_features("feats1", feats1), _as_features("feats2", feats2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    if num_subsets < 1 or max_subset_size < 2:
        raise ValueError(f"need num_subsets >= 1 and max_subset_size >= 2, got {num_subsets}, {max_subset_size}")
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {f1.shape[0]} and {f2.shape[0]}")
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        value = cleanfid_fid.kernel_distance(f1, f2, num_subsets=num_subsets, max_subset_size=m)
    finally:
        np.random.set_state(state)
    return KIDEstimate(
        value=float(value), subset_size=m, requested_subset_size=max_subset_size, num_subsets=num_subsets, seed=seed
    )


def fid_from_features(
    gen_features: np.ndarray,
    reference: ReferenceStats,
    *,
    extractor_name: str,
    mode: str = CLEAN_MODE,
    resolution: tuple[int, int] | None = None,
) -> MetricValue:
    """FID of generated features (n, d) against reference statistics.

    Returns:
        :class:`MetricValue` named ``"fid"`` (lower is better); ``extra`` records
        the extractor and the reference sample count.
    """
    gen = _as_features("gen_features", gen_features)
    if gen.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 generated samples, got {gen.shape[0]}")
    stats = ReferenceStats.from_features(gen, keep_features=False)
    value = frechet_distance(stats.mu, stats.sigma, reference.mu, reference.sigma)
    return MetricValue(
        name="fid",
        value=value,
        implementation=package_version("clean-fid"),
        mode=mode,
        resolution=resolution,
        n_samples=gen.shape[0],
        direction="lower",
        extra={"extractor": extractor_name, "n_reference": reference.n},
    )


def kid_from_features(
    gen_features: np.ndarray,
    ref_features: np.ndarray,
    *,
    extractor_name: str,
    mode: str = CLEAN_MODE,
    resolution: tuple[int, int] | None = None,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
    scale: float = 1.0,
) -> MetricValue:
    """KID of generated features (n1, d) against reference features (n2, d).

    ``scale`` multiplies the value (use 1000 for the common "KID x 10^3"
    reporting); it is stored in the result. ``extra`` records the subset size
    actually used (see :func:`kernel_inception_distance`).
    """
    est = kernel_inception_distance(gen_features, ref_features, num_subsets, max_subset_size, seed)
    return MetricValue(
        name="kid",
        value=est.value * scale,
        implementation=package_version("clean-fid"),
        mode=mode,
        resolution=resolution,
        n_samples=int(np.asarray(gen_features).shape[0]),
        scale=scale,
        direction="lower",
        extra={
            "extractor": extractor_name,
            "n_reference": int(np.asarray(ref_features).shape[0]),
            "subset_size": est.subset_size,
            "requested_subset_size": est.requested_subset_size,
            "subset_size_adjusted": est.adjusted,
            "num_subsets": est.num_subsets,
            "seed": est.seed,
        },
    )


def compute_fid_kid(
    generated: torch.Tensor | Iterable[torch.Tensor],
    reference: ReferenceStats | torch.Tensor | Iterable[torch.Tensor],
    *,
    extractor: FeatureExtractor | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
    kid_scale: float = 1.0,
) -> dict[str, MetricValue]:
    """FID and KID of generated images against a reference set, entirely in memory.

    Args:
        generated: tensor (N, 3, H, W) or iterable of batches; float in [0, 255].
        reference: precomputed :class:`ReferenceStats` (e.g. from the cache; must
            hold ``features`` for KID) or reference images in the same format as
            ``generated``.
        extractor: feature extractor; default is clean-fid's Inception in mode
            ``"clean"`` from local weights (see :mod:`benchmark.metrics.weights`).
        weights_dir: benchmark weights directory for the default extractor.
        device: device for the default extractor.
        batch_size, num_subsets, max_subset_size, seed, kid_scale: see
            :func:`extract_features` and :func:`kid_from_features`.

    Returns:
        ``{"fid": MetricValue, "kid": MetricValue}``. When the Inception weights
        are missing both values are None and ``unavailable`` names the file and
        every path looked at; nothing is downloaded.
    """
    if extractor is None:
        built = build_clean_extractor(weights_dir, device)
        if isinstance(built, Unavailable):
            common = {"implementation": package_version("clean-fid"), "mode": CLEAN_MODE, "direction": "lower"}
            return {
                "fid": MetricValue.missing("fid", built.reason, extra={"looked_for": list(built.looked_for)}, **common),
                "kid": MetricValue.missing(
                    "kid", built.reason, scale=kid_scale, extra={"looked_for": list(built.looked_for)}, **common
                ),
            }
        extractor = built

    gen_acc = FeatureAccumulator(extractor)
    resolution: tuple[int, int] | None = None
    for batch in _as_batches(generated, batch_size):
        resolution = _same_resolution(resolution, batch)
        gen_acc.update(batch)
    gen = gen_acc.compute()

    if isinstance(reference, ReferenceStats):
        ref_stats = reference
    else:
        ref_stats = ReferenceStats.from_features(extract_features(reference, extractor, batch_size))

    fid = fid_from_features(gen, ref_stats, extractor_name=extractor.name, mode=extractor.mode, resolution=resolution)
    if ref_stats.features is None:
        kid = MetricValue.missing(
            "kid",
            "reference statistics hold no raw features (only mu/sigma); KID needs them",
            implementation=package_version("clean-fid"),
            mode=extractor.mode,
            resolution=resolution,
            scale=kid_scale,
            direction="lower",
        )
    else:
        kid = kid_from_features(
            gen,
            ref_stats.features,
            extractor_name=extractor.name,
            mode=extractor.mode,
            resolution=resolution,
            num_subsets=num_subsets,
            max_subset_size=max_subset_size,
            seed=seed,
            scale=kid_scale,
        )
    return {"fid": fid, "kid": kid}


def _same_resolution(current: tuple[int, int] | None, batch: torch.Tensor) -> tuple[int, int]:
    res = (int(batch.shape[-2]), int(batch.shape[-1]))
    if current is not None and res != current:
        raise ValueError(f"generated images change resolution from {current} to {res}")
    return res
