"""FID and KID (clean-fid, mode ``clean``) and per-sample LPIPS (lpips, AlexNet v0.1).

The work is split where the data lives:

* worker, per job: :func:`extract_set_inputs` turns the job's images into what
  the metrics need -- Inception pool features of the generated images and of
  the task's reference images, LPIPS of each generated image against its
  ground truth -- as a :class:`SetInputs`, stored in the job folder as one
  ``.npz``;
* report, per (task, model): :func:`set_metric_values` computes FID and KID
  from the features of all the jobs with clean-fid's own functions; LPIPS is
  a per-sample value averaged like any other.

Every image is first quantised to 8 bits exactly as the job writes it to PNG
(:func:`benchmark.scoring.figures.to_uint8`), then goes through the libraries' own
code paths for image files: clean-fid's ``build_resizer("clean")`` (PIL
bicubic to 299x299 on float32) and its Inception TorchScript, lpips'
``im2tensor`` (uint8 -> [-1, 1]) and ``LPIPS(net="alex")``. So the numbers
equal ``cleanfid.fid.compute_fid`` / ``compute_kid`` on folders of the saved
PNGs and ``lpips`` on the PNGs read back. Weights are resolved offline by
:mod:`benchmark.metrics.weights`; a metric whose weights are missing is absent
from :class:`SetInputs`, with the reason and the paths looked at in ``notes``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.scoring.figures import to_uint8
from benchmark.metrics.reference_stats import ReferenceSetKey, ReferenceStats, ReferenceStatsCache, features_digest
from benchmark.metrics.weights import Unavailable, resolve_metric_weights
from benchmark.store import write_atomic

MODE = "clean"
FEATURE_DIM = 2048
# Below this many samples FID's covariance estimate is rank-deficient and the value biased upwards.
FID_FULL_N = 2048
SMALL_N_NOTE = f"FID on n < {FID_FULL_N} samples: biased upwards, compare only at equal n"
# clean-fid's kernel_distance defaults; the subset size is capped at the smaller set's n.
KID_NUM_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000
KID_SEED = 0
# AlexNet's strided conv and three max-pools leave no spatial extent below this size.
LPIPS_MIN_SIZE = 31
_BATCH = 32

__all__ = ["FID_FULL_N", "LPIPS_MIN_SIZE", "MODE", "SMALL_N_NOTE", "SetInputs", "extract_set_inputs",
           "set_metric_values"]


def _version(distribution: str) -> str:
    try:
        return f"{distribution} {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


# --- worker side -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SetInputs:
    """What one job stores for the set metrics (one ``.npz``, e.g. ``set_inputs.npz``).

    Attributes:
        inception_generated: (B, 2048) float32 Inception pool features of the generated
            images (the network's output, which clean-fid computes on), or None when the
            Inception weights are missing.
        inception_reference: (R, 2048) float32 features of the job's reference-set images,
            or None (weights missing, or no reference set given).
        lpips: (B,) float64 LPIPS of each generated image against its target (lower is more
            alike), or None (weights missing, no targets, or images below 31 px).
        notes: ``{metric: reason}`` for each of ``fid``, ``kid``, ``lpips`` that cannot be
            computed from this job, naming the missing file and every path looked at.
    """

    inception_generated: np.ndarray | None
    inception_reference: np.ndarray | None
    lpips: np.ndarray | None
    notes: Mapping[str, str] = field(default_factory=dict)

    _ARRAYS = ("inception_generated", "inception_reference", "lpips")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (:func:`benchmark.store.write_atomic`): a reader sees no file or the whole file."""
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(json.dumps({"notes": dict(self.notes)})), **arrays)
        return write_atomic(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SetInputs:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] if k in data.files else None for k in cls._ARRAYS}
        return cls(**arrays, notes=meta.get("notes", {}))


def quantise(images: torch.Tensor, name: str = "images") -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, exactly as the job's PNG writer rounds."""
    if images.ndim != 4 or images.shape[1] != 3 or not torch.is_floating_point(images):
        raise ValueError(f"{name}: expected a float tensor (B, 3, H, W) in [0, 1], "
                         f"got {images.dtype} {tuple(images.shape)}")
    if len(images) == 0:
        return np.zeros((0, *images.shape[2:], 3), np.uint8)
    return np.stack([to_uint8(img) for img in images])


def _file_key(path: Path) -> tuple[str, int, int]:
    # Keyed on size and mtime too, so a file replaced in place is loaded again.
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _inception(key: tuple[str, int, int], device: str) -> torch.nn.Module:
    """clean-fid's ``InceptionV3W`` over the ``inception-2015-12-05.pt`` of ``key`` (:func:`_file_key`), cached per
    file and device: (B, 3, 299, 299) float in [0, 255] -> (B, 2048) pool features."""
    from cleanfid.inception_torchscript import InceptionV3W

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        # download=False: the file was resolved offline; clean-fid must never reach its urllib branch.
        return InceptionV3W(str(Path(key[0]).parent), download=False, resize_inside=False).eval().to(device)


def inception_features(images: np.ndarray, network: torch.nn.Module, device: str | torch.device = "cpu") -> np.ndarray:
    """clean-fid ``clean`` features of uint8 images (B, H, W, 3) -> (B, 2048) float32.

    Same steps as clean-fid's folder path (``ResizeDataset`` then ``get_batch_features``).
    """
    from cleanfid.fid import get_batch_features
    from cleanfid.resize import build_resizer

    resize = build_resizer(MODE)
    chunks = [np.zeros((0, FEATURE_DIM), np.float32)]
    for start in range(0, len(images), _BATCH):
        batch = np.stack([resize(img) for img in images[start:start + _BATCH]]).transpose(0, 3, 1, 2)
        feats = get_batch_features(torch.from_numpy(np.ascontiguousarray(batch)), network, torch.device(device))
        chunks.append(feats.reshape(len(batch), -1).astype(np.float32))
    return np.concatenate(chunks)


@functools.lru_cache(maxsize=4)
def _lpips_alex(alexnet: tuple[str, int, int], linear: tuple[str, int, int], device: str) -> torch.nn.Module:
    """``lpips.LPIPS(net="alex")`` v0.1 from local files (:func:`_file_key`): torchvision's
    ``alexnet-owt-7be5be79.pth`` and lpips' linear layers ``alex.pth``, cached per files and device.
    Maps two (B, 3, H, W) images in [-1, 1] (H, W >= 31) to (B, 1, 1, 1) distances."""
    import lpips
    import torchvision

    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated `pretrained=`; pnet_rand=True means no download is attempted.
        warnings.filterwarnings("ignore", category=UserWarning)
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, model_path=linear[0], pnet_rand=True,
                          verbose=False)
    backbone = torchvision.models.alexnet()
    try:
        backbone.load_state_dict(torch.load(alexnet[0], map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"{alexnet[0]}: not a torchvision AlexNet state dict ({err})") from err
    # lpips splits torchvision's alexnet.features into five slices that keep the module indices.
    for part in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
        for index, module in part.named_children():
            module.load_state_dict(backbone.features[int(index)].state_dict())
    return net.eval().requires_grad_(False).to(device)


@torch.no_grad()
def lpips_per_sample(generated: np.ndarray, targets: np.ndarray, network: torch.nn.Module,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """LPIPS of uint8 image pairs (B, H, W, 3) -> (B,) float64, through lpips' ``im2tensor`` ([-1, 1])."""
    import lpips

    if generated.shape != targets.shape:
        raise ValueError(f"LPIPS pairs differ in shape: generated {generated.shape} vs targets {targets.shape}")
    out = [np.zeros(0)]
    for start in range(0, len(generated), _BATCH):
        a, b = ([lpips.im2tensor(img) for img in x[start:start + _BATCH]] for x in (generated, targets))
        d = network(torch.cat(a).to(device), torch.cat(b).to(device))
        out.append(d.reshape(-1).double().cpu().numpy())
    return np.concatenate(out)


def extract_set_inputs(
    generated: torch.Tensor,
    targets: torch.Tensor | None,
    reference_set: torch.Tensor | None,
    weights_dir: str | os.PathLike[str] | None,
    device: str | torch.device = "cpu",
) -> SetInputs:
    """What the set metrics need from one job (see :class:`SetInputs`).

    Args:
        generated: (B, 3, H, W) float in [0, 1], the model outputs (saved as 8-bit PNGs).
        targets: (B, 3, H, W) float in [0, 1], the ground truth of each sample for LPIPS
            (paired protocols), or None.
        reference_set: (R, 3, H', W') float in [0, 1], the job's share of the task's FID/KID
            reference set (the real photo / ground truth of each sample), or None.
        weights_dir: benchmark weights directory (None: ``$I2AM_WEIGHTS_DIR``, then the
            libraries' own locations).
        device: where the networks run; resizing is on the CPU, as in clean-fid.

    Never downloads. Missing weights, no targets, no reference set or images too small for
    LPIPS leave the array None with the reason in ``notes``.
    """
    gen = quantise(generated, "generated")
    notes: dict[str, str] = {}
    feats_gen = feats_ref = per_sample = None

    inception = resolve_metric_weights("fid", weights_dir)
    if isinstance(inception, Unavailable):
        notes["fid"] = notes["kid"] = inception.reason
    else:
        network = _inception(_file_key(inception["inception"]), str(device))
        feats_gen = inception_features(gen, network, device)
        if reference_set is None:
            notes["fid"] = notes["kid"] = "no reference set given to this job"
        else:
            feats_ref = inception_features(quantise(reference_set, "reference_set"), network, device)

    if targets is None:
        notes["lpips"] = "no ground truth for this protocol"
    elif min(gen.shape[1:3], default=0) < LPIPS_MIN_SIZE:
        notes["lpips"] = f"LPIPS-AlexNet needs H, W >= {LPIPS_MIN_SIZE}; images are {gen.shape[1]}x{gen.shape[2]}"
    else:
        weights = resolve_metric_weights("lpips", weights_dir)
        if isinstance(weights, Unavailable):
            notes["lpips"] = weights.reason
        else:
            network = _lpips_alex(_file_key(weights["alexnet"]), _file_key(weights["lpips_alex_lin"]), str(device))
            per_sample = lpips_per_sample(gen, quantise(targets, "targets"), network, device)

    return SetInputs(feats_gen, feats_ref, per_sample, notes)


# --- report side -------------------------------------------------------------------------------
def _features(name: str, feats: Any) -> np.ndarray:
    # float32 as clean-fid's extractor returns them: its KID sums in that precision (the unbiased MMD
    # cancels large kernel terms, so float64 would differ from compute_kid by ~1e-4 relative).
    arr = np.zeros((0, FEATURE_DIM), np.float32) if feats is None else np.asarray(feats, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected features (n, d), got shape {arr.shape}")
    return arr


def set_metric_values(
    generated_feats: np.ndarray | None,
    reference_feats: np.ndarray | None,
    *,
    kid_scale: float = 1000.0,
    cache: ReferenceStatsCache | None = None,
    cache_key_parts: ReferenceSetKey | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """FID and KID of generated features against reference features, with clean-fid's functions.

    FID is ``cleanfid.fid.fid_from_feats`` split in its two halves (mean and ``np.cov`` of
    each set, then ``cleanfid.fid.frechet_distance``) so that the reference half can be
    cached; KID is ``cleanfid.fid.kernel_distance`` with the subset size capped at the
    smaller set's n, numpy's global RNG seeded with 0 (and restored), times ``kid_scale``.
    Features are handed to clean-fid as float32, as its own folder path does, so the values
    equal ``compute_fid`` / ``compute_kid`` on the same images.

    Args:
        generated_feats: (n, 2048) Inception features of all generated images of a (task, model)
            (:attr:`SetInputs.inception_generated` of its jobs, concatenated).
        reference_feats: (r, 2048) features of the task's reference set (``inception_reference``).
        kid_scale: multiplies KID (1000: the usual "KID x10^3").
        cache: where reference statistics (mu, sigma) are kept; None computes them each time.
        cache_key_parts: :class:`ReferenceSetKey` (or a mapping of its fields: dataset, split,
            size, sample_ids) naming the reference set; needed with ``cache``.

    Returns:
        ``fid``, ``kid`` (floats; NaN with the reason in ``note`` when not computable),
        ``n_generated``, ``n_reference``, ``small_n`` (n < 2048), ``kid_scale``,
        ``kid_subset_size``, ``kid_num_subsets``, ``implementation``, ``mode``, ``label``
        (print beside every number), ``reference_key`` and ``reference_stats`` (``"cached"``,
        ``"computed"``, ``"recomputed (stale entry)"`` or ``"uncached"``), ``note`` (one line,
        "" when none).
        Never raises on data: fewer than 2 samples or non-finite features give NaN.
    """
    from cleanfid.fid import frechet_distance, kernel_distance

    gen, ref = _features("generated_feats", generated_feats), _features("reference_feats", reference_feats)
    n, r = len(gen), len(ref)
    if n and r and gen.shape[1] != ref.shape[1]:
        raise ValueError(f"feature dimensions differ: generated {gen.shape[1]}, reference {ref.shape[1]}")
    subset, implementation = min(n, r, KID_MAX_SUBSET_SIZE), _version("clean-fid")
    out: dict[str, Any] = {
        "fid": math.nan, "kid": math.nan, "n_generated": n, "n_reference": r, "small_n": min(n, r) < FID_FULL_N,
        "kid_scale": float(kid_scale), "kid_subset_size": subset, "kid_num_subsets": KID_NUM_SUBSETS,
        "implementation": implementation, "mode": MODE, "label": f"{implementation}, mode {MODE}, KID x{kid_scale:g}",
        "reference_key": None, "reference_stats": "uncached",
    }
    notes = [SMALL_N_NOTE] if out["small_n"] else []
    if min(n, r) < 2 or not (np.isfinite(gen).all() and np.isfinite(ref).all()):
        out["kid_subset_size"] = 0
        out["note"] = (f"FID/KID need at least 2 generated and 2 reference samples, got {n} and {r}" if min(n, r) < 2
                       else "; ".join(notes + ["FID/KID not computed: the features contain NaN or inf"]))
        return out
    if subset < KID_MAX_SUBSET_SIZE:
        notes.append(f"KID subset size capped at n={subset} (clean-fid default {KID_MAX_SUBSET_SIZE})")

    if cache is None:
        ref_stats = ReferenceStats.from_features(ref)
    else:
        if cache_key_parts is None:
            raise ValueError("a reference-stats cache needs cache_key_parts (dataset, split, size, sample_ids)")
        key = cache_key_parts if isinstance(cache_key_parts, ReferenceSetKey) else ReferenceSetKey(**cache_key_parts)
        if len(key.sample_ids) != r:
            raise ValueError(f"{len(key.sample_ids)} reference sample ids for {r} reference features")
        out["reference_key"] = key.key(MODE)
        cached = cache.load(out["reference_key"])
        if cached is not None and cached.digest == features_digest(ref):
            ref_stats, out["reference_stats"] = cached, "cached"
        else:  # none yet, or the same samples with other features (other weights or image files): never serve those
            ref_stats = ReferenceStats.from_features(ref)
            cache.save(out["reference_key"], ref_stats)
            out["reference_stats"] = "computed" if cached is None else "recomputed (stale entry)"

    gen_stats = ReferenceStats.from_features(gen)
    printed = io.StringIO()
    try:
        # clean-fid prints when it regularises a singular covariance product; keep it as a note.
        with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
            warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated.*")
            # Singular whenever n < 2048; SMALL_N_NOTE already says so.
            warnings.filterwarnings("ignore", message=".*Matrix is singular.*")
            out["fid"] = float(frechet_distance(gen_stats.mu, gen_stats.sigma, ref_stats.mu, ref_stats.sigma))
    except (ValueError, np.linalg.LinAlgError) as err:
        notes.append(f"FID not computed: clean-fid {type(err).__name__}: {err}")
    if printed.getvalue().strip():
        notes.append("clean-fid: " + printed.getvalue().strip())

    state = np.random.get_state()
    try:
        np.random.seed(KID_SEED)
        out["kid"] = kernel_distance(gen, ref, num_subsets=KID_NUM_SUBSETS, max_subset_size=subset) * kid_scale
    finally:
        np.random.set_state(state)
    out["note"] = "; ".join(notes)
    return out
