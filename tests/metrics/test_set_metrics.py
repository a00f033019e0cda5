"""FID/KID/LPIPS against clean-fid's and lpips' own results on the same PNG files, with synthetic weights."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid_fid
from PIL import Image

from benchmark.scoring.figures import save_png, to_uint8
from benchmark.metrics import (
    SMALL_N_NOTE,
    ReferenceSetKey,
    ReferenceStatsCache,
    SetInputs,
    extract_set_inputs,
    set_metric_values,
)

N, H, W = 16, 32, 32


def images(seed: int, n: int = N, smooth: bool = False) -> torch.Tensor:
    """(n, 3, H, W) in [0, 1], off the 8-bit grid so that the PNG quantisation matters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, H, W, generator=g)
    if smooth:  # a visibly different distribution: blurred, brighter, with a ramp
        x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2) * 0.5 + torch.linspace(0.2, 0.5, W)
    return x.clamp(0, 1)


def write_pngs(folder: Path, batch: torch.Tensor) -> Path:
    """As the job writes its outputs."""
    for i, img in enumerate(batch):
        save_png(to_uint8(img), folder / f"{i:03d}.png")
    return folder


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cleanfid_kwargs() -> dict:
    return {"mode": "clean", "num_workers": 0, "device": torch.device("cpu"), "use_dataparallel": False,
            "verbose": False}


def test_fid_kid_lpips_equal_the_libraries_on_the_saved_pngs(synthetic_weights: dict, tmp_path: Path) -> None:
    generated, real = images(0), images(1, smooth=True)
    gen_dir, ref_dir = write_pngs(tmp_path / "gen", generated), write_pngs(tmp_path / "ref", real)

    inputs = extract_set_inputs(generated, real, real, None, "cpu")
    assert inputs.notes == {}
    assert inputs.inception_generated.shape == (N, 2048) and inputs.inception_generated.dtype == np.float32
    assert inputs.inception_reference.shape == (N, 2048) and inputs.lpips.shape == (N,)

    values = set_metric_values(inputs.inception_generated, inputs.inception_reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid = cleanfid_fid.compute_fid(str(gen_dir), str(ref_dir), **cleanfid_kwargs())
        # The same subset draws as ours (with m = n every subset is a permutation of the set, but
        # float32 sums depend on the order: an unseeded run differs by a few 1e-6 relative).
        np.random.seed(0)
        kid = cleanfid_fid.compute_kid(str(gen_dir), str(ref_dir), **cleanfid_kwargs())
    assert fid > 1 and kid > 0  # the two sets differ: a relative comparison means something
    assert values["fid"] == pytest.approx(fid, rel=1e-5)
    assert values["kid"] == pytest.approx(kid * 1000, rel=1e-5)
    assert values["kid_subset_size"] == N and values["kid_scale"] == 1000.0
    assert (values["n_generated"], values["n_reference"], values["small_n"]) == (N, N, True)
    assert SMALL_N_NOTE in values["note"] and "KID subset size capped at n=16" in values["note"]
    assert values["label"].startswith("clean-fid 0.1.35, mode clean, KID x1000")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False)
    with torch.no_grad():
        expected = [float(reference(lpips.im2tensor(read_png(gen_dir / f"{i:03d}.png")),
                                    lpips.im2tensor(read_png(ref_dir / f"{i:03d}.png")))) for i in range(N)]
    np.testing.assert_allclose(inputs.lpips, expected, rtol=1e-5)


def test_set_inputs_roundtrip_atomically(synthetic_weights: dict, tmp_path: Path) -> None:
    inputs = extract_set_inputs(images(2, 4), None, None, None, "cpu")
    assert inputs.inception_reference is None and inputs.lpips is None
    assert set(inputs.notes) == {"fid", "kid", "lpips"} and "no reference set" in inputs.notes["fid"]
    job = tmp_path / "job"
    job.mkdir()
    path = inputs.save(job / "set_inputs.npz")
    assert [p.name for p in job.iterdir()] == ["set_inputs.npz"]  # the temporary file was renamed
    loaded = SetInputs.load(path)
    np.testing.assert_array_equal(loaded.inception_generated, inputs.inception_generated)
    assert loaded.inception_reference is None and loaded.lpips is None
    assert loaded.notes == inputs.notes


def test_without_weights_every_metric_names_the_paths(weight_dirs: dict[str, Path]) -> None:
    x = images(3, 2)
    inputs = extract_set_inputs(x, x, x, None, "cpu")
    assert (inputs.inception_generated, inputs.inception_reference, inputs.lpips) == (None, None, None)
    for metric, paths in (
        ("fid", [weight_dirs["weights"] / "inception-2015-12-05.pt",
                 weight_dirs["cleanfid"] / "inception-2015-12-05.pt"]),
        ("lpips", [weight_dirs["weights"] / "alexnet-owt-7be5be79.pth",
                   weight_dirs["torch_home"] / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"]),
    ):
        for path in paths:
            assert str(path) in inputs.notes[metric]
    assert inputs.notes["kid"] == inputs.notes["fid"]


def test_lpips_needs_31_pixels(synthetic_weights: dict) -> None:
    small = images(4, 2)[..., :16, :16]
    inputs = extract_set_inputs(small, small, None, None, "cpu")
    assert inputs.lpips is None and "H, W >= 31" in inputs.notes["lpips"] and "16x16" in inputs.notes["lpips"]


def features(seed: int, n: int, shift: float = 0.0, d: int = 8) -> np.ndarray:
    """(n, d) float32, like Inception's output."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + shift).astype(np.float32)


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """KID's estimate on full sets of equal size m, written out in float64: kernel k(a, b) = (a.b / d + 1)^3."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_small_sets_cap_the_kid_subset_at_n() -> None:
    gen, ref = features(0, 5), features(1, 8, shift=0.5)
    values = set_metric_values(gen, ref, kid_scale=1.0)
    assert values["kid_subset_size"] == 5 and "capped at n=5" in values["note"]
    np.random.seed(0)
    assert values["kid"] == cleanfid_fid.kernel_distance(gen, ref, max_subset_size=5)
    assert values["fid"] == cleanfid_fid.fid_from_feats(gen, ref)
    # Equal sizes: every subset is the whole set, so KID is the exact unbiased MMD^2.
    equal = set_metric_values(gen, ref[:5], kid_scale=1000.0)
    assert equal["kid"] == pytest.approx(1000 * unbiased_mmd2(gen, ref[:5]), rel=1e-5)


def test_fewer_than_two_samples_give_nan_with_the_reason() -> None:
    for gen, ref in ((features(0, 1), features(1, 5)), (np.zeros((0, 8)), features(1, 5)), (None, None)):
        values = set_metric_values(gen, ref)
        assert math.isnan(values["fid"]) and math.isnan(values["kid"])
        assert "at least 2" in values["note"]
    bad = features(0, 4)
    bad[0, 0] = np.nan
    assert "NaN or inf" in set_metric_values(bad, features(1, 4))["note"]


def test_reference_stats_are_cached_under_one_key(tmp_path: Path) -> None:
    gen, ref = features(0, 20), features(1, 12, shift=0.3)
    cache = ReferenceStatsCache(tmp_path)
    parts = {"dataset": "viton-hd", "split": "test", "size": (512, 384), "sample_ids": [f"{i:05d}" for i in range(12)]}
    first = set_metric_values(gen, ref, cache=cache, cache_key_parts=parts)
    second = set_metric_values(gen, ref, cache=cache, cache_key_parts=ReferenceSetKey(**parts))
    assert (first["reference_stats"], second["reference_stats"]) == ("computed", "cached")
    assert first["reference_key"] == second["reference_key"]
    assert first["reference_key"].startswith("viton-hd__test__512x384__clean__ids-")
    assert first["fid"] == second["fid"] == cleanfid_fid.fid_from_feats(gen, ref)
    assert [p.name for p in tmp_path.iterdir()] == [first["reference_key"] + ".npz"]
    # Same ids, other features (e.g. other Inception weights): the entry is stale, never served.
    third = set_metric_values(gen, ref + 1, cache=cache, cache_key_parts=parts)
    assert third["reference_stats"] == "recomputed (stale entry)"
    assert third["fid"] == cleanfid_fid.fid_from_feats(gen, ref + 1)
    assert set_metric_values(gen, ref + 1, cache=cache, cache_key_parts=parts)["reference_stats"] == "cached"
    with pytest.raises(ValueError, match="11 reference sample ids for 12"):
        set_metric_values(gen, ref, cache=cache, cache_key_parts={**parts, "sample_ids": parts["sample_ids"][:11]})
