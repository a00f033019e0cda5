"""benchmark.datasets.io: decoding, mask thresholding and the errors that name sample and file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.api.sample import SampleError
from benchmark.datasets.io import check_aspect, check_coverage, check_size, read_image, read_mask


def test_read_image_range_shape_and_resize(tmp_path, save) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    save(tmp_path / "a.png", arr)
    img = read_image(tmp_path / "a.png", "s")
    assert img.dtype == torch.float32 and img.shape == (3, 12, 10)
    torch.testing.assert_close(img, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    assert read_image(tmp_path / "a.png", "s", (6, 5)).shape == (3, 6, 5)


def test_read_mask_thresholds_jpeg_ringing(tmp_path, save) -> None:
    m = np.zeros((16, 16), np.uint8)
    m[4:12, 4:12] = 255
    save(tmp_path / "m.jpg", m)
    got = read_mask(tmp_path / "m.jpg", "s")
    assert got.shape == (1, 16, 16)
    torch.testing.assert_close(got[0], torch.from_numpy(m >= 128).float())


@pytest.mark.parametrize("fault", ["missing", "garbage", "truncated"])
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_bad_files_raise_sample_error_naming_sample_and_path(tmp_path, save, inject, fault_reasons, fault, suffix, assert_names) -> None:
    path = tmp_path / f"x{suffix}"
    save(path, np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    inject(path, fault)
    with pytest.raises(SampleError, match=fault_reasons[fault]) as err:
        read_image(path, "id42")
    assert_names(err.value, "id42", path)


@pytest.mark.parametrize("fault", ["empty", "gradient", "full"])
def test_bad_masks(tmp_path, save, inject, fault_reasons, fault, assert_names) -> None:
    path = tmp_path / "m.png"
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 3:6] = 255
    save(path, m)
    inject(path, fault)
    with pytest.raises(SampleError, match=fault_reasons[fault]) as err:
        read_mask(path, "id7")
    assert_names(err.value, "id7", path)
    if fault == "empty":
        assert read_mask(path, "id7", allow_empty=True).sum() == 0
    if fault == "full":
        assert read_mask(path, "id7", allow_full=True).all()


def test_check_coverage_is_the_one_rule_for_empty_and_full() -> None:
    inside = np.zeros((4, 5), bool)
    inside[1, 2] = True
    check_coverage(inside, "s", "m.png")
    for mask, reason in ((np.zeros((4, 5), bool), "mask is empty"), (np.ones((4, 5), bool), "mask is full")):
        with pytest.raises(SampleError, match=reason):
            check_coverage(mask, "s", "m.png")
        check_coverage(mask, "s", "m.png", allow_empty=True, allow_full=True)
    # after the >= 128 threshold: a mask that is 255 everywhere but one pixel at 127 is not full
    one_out = np.full((4, 5), 255, np.uint8)
    one_out[0, 0] = 127
    check_coverage(one_out >= 128, "s", "m.png")


def test_check_size() -> None:
    check_size("s", Path("a.png"), (8, 6), (8, 6), "the person image p.jpg")
    with pytest.raises(SampleError, match=r"size 6x8 differs from the person image p.jpg \(8x6\)") as err:
        check_size("s", Path("a.png"), (6, 8), (8, 6), "the person image p.jpg")
    assert (err.value.sample_id, err.value.path) == ("s", "a.png")


def test_check_aspect(tmp_path) -> None:
    check_aspect("s", tmp_path, (1024, 768), (512, 384))
    with pytest.raises(SampleError, match="aspect ratio 768x768"):
        check_aspect("s", tmp_path, (768, 768), (512, 384))
    with pytest.raises(SampleError, match=r"aspect ratio 768x768 does not match the person image \(512x384\)"):
        check_aspect("s", tmp_path, (768, 768), (512, 384), of="the person image")
