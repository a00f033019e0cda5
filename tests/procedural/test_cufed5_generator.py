"""The procedural CUFED5 tree: ``XXX_0.png`` .. ``XXX_5.png`` and the HR/reference masks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.procedural import generate_cufed5

SIZE = 48


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_cufed5(tmp_path_factory.mktemp("f"), n_train=2, n_test=6, seed=3, size=SIZE)


@pytest.fixture(scope="module")
def coarse_root(tmp_path_factory):
    return generate_cufed5(tmp_path_factory.mktemp("c"), n_train=2, n_test=6, seed=3, size=SIZE, texture_scale=2)


def _interior_row_runs(img: np.ndarray) -> list[int]:
    """Lengths of runs of identical pixels along each row, leaving out the runs that touch the image border."""
    runs = []
    for row in img:
        change = np.flatnonzero(np.any(row[1:] != row[:-1], axis=-1)) + 1
        runs += np.diff(change).tolist()
    return runs


def test_exact_layout(root) -> None:
    expected = set()
    for split, ids in {"train": range(2), "test": range(2, 8)}.items():
        for i in ids:
            expected |= {f"{split}/CUFED5/{i:03d}_{k}.png" for k in range(6)}
            expected |= {f"{split}/CUFED5_masks/{i:03d}_{k}_{side}.png" for k in range(1, 6) for side in ("hr", "ref")}
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == expected


def test_size_must_divide_by_four(tmp_path) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        generate_cufed5(tmp_path, n_train=1, n_test=1, size=50)


def test_masks_are_binary_and_level_one_overlaps(root, load) -> None:
    masks = root / "test" / "CUFED5_masks"
    for p in masks.iterdir():
        assert set(np.unique(load(p))) <= {0.0, 1.0}, p
    for i in range(2, 8):
        assert load(masks / f"{i:03d}_1_hr.png").any() and load(masks / f"{i:03d}_1_ref.png").any()
    for p in (root / "test" / "CUFED5").iterdir():
        assert load(p).shape == (SIZE, SIZE, 3)


def test_texture_scale_must_divide_the_canvas(tmp_path) -> None:
    with pytest.raises(ValueError, match="texture_scale"):
        generate_cufed5(tmp_path, n_train=1, n_test=1, size=48, texture_scale=5)
    with pytest.raises(ValueError, match="texture_scale"):
        generate_cufed5(tmp_path, n_train=1, n_test=1, size=48, texture_scale=0)


def test_texture_scale_two_repeats_every_canvas_pixel_two_by_two(root, coarse_root, load) -> None:
    """With scale 2 the canvas is drawn at half size and each pixel doubled: every run of equal pixels
    inside a row has even length. Scale 1 has odd runs (stripes of period 3, 5, glyph strokes)."""
    fine, coarse = [], []
    for i in range(2, 8):
        fine += _interior_row_runs(load(root / "test" / "CUFED5" / f"{i:03d}_0.png"))
        coarse += _interior_row_runs(load(coarse_root / "test" / "CUFED5" / f"{i:03d}_0.png"))
    assert coarse and all(r % 2 == 0 for r in coarse)
    assert any(r % 2 for r in fine)


def test_texture_scale_is_deterministic(coarse_root, tmp_path, load) -> None:
    again = generate_cufed5(tmp_path, n_train=2, n_test=6, seed=3, size=SIZE, texture_scale=2)
    for p in (coarse_root / "test").rglob("*.png"):
        np.testing.assert_array_equal(load(p), load(again / p.relative_to(coarse_root)))


@pytest.mark.parametrize("tree", ["root", "coarse_root"])
def test_hr_and_reference_masks_cover_the_same_content(tree, request, load) -> None:
    """HR pixels under the HR mask show what the reference shows under its mask, up to the scale change."""
    root = request.getfixturevalue(tree)
    out, masks = root / "test" / "CUFED5", root / "test" / "CUFED5_masks"
    for i in range(2, 8):
        hr = load(out / f"{i:03d}_0.png")
        for level in range(1, 6):
            ref = load(out / f"{i:03d}_{level}.png")
            hm = load(masks / f"{i:03d}_{level}_hr.png") > 0.5
            rm = load(masks / f"{i:03d}_{level}_ref.png") > 0.5
            assert hm.any() == rm.any()
            if level == 1:  # scale 1: the same pixels, only shifted
                assert hm.sum() == rm.sum()
                np.testing.assert_allclose(hr[hm].mean(0), ref[rm].mean(0), atol=0.01)
                np.testing.assert_array_equal(np.sort(hr[hm], axis=0), np.sort(ref[rm], axis=0))
            elif hm.mean() > 0.1:  # a scale change: nearest resampling keeps the mean colour roughly
                np.testing.assert_allclose(hr[hm].mean(0), ref[rm].mean(0), atol=0.1)


def test_ids_past_999_widen_every_name_so_names_sort_in_id_order(tmp_path) -> None:
    from benchmark.datasets import Cufed5Dataset

    root = generate_cufed5(tmp_path, n_train=1000, n_test=1, seed=0, size=16)
    train = sorted(p.name for p in (root / "train" / "CUFED5").glob("*_0.png"))
    assert train[0] == "0000_0.png" and train[-1] == "0999_0.png" and len(train) == 1000
    assert [p.name for p in (root / "test" / "CUFED5").glob("*_0.png")] == ["1000_0.png"]
    ids = Cufed5Dataset(root / "train", level=1).ids
    assert [int(i) for i in ids] == list(range(1000))
