"""Cufed5Dataset: the x1/4 PIL-bicubic LR protocol, the optional masks, and every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.api.sample import DatasetError, SampleError, collate
from benchmark.datasets import Cufed5Dataset
from benchmark.procedural import generate_cufed5

S = 32


@pytest.fixture
def root(tmp_path):
    """The folder that contains ``CUFED5`` and ``CUFED5_masks`` (ids 000 .. 003)."""
    return generate_cufed5(tmp_path, n_train=0, n_test=4, seed=0, size=S) / "test"


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(arr, dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.mark.parametrize(("h", "w"), [(43, 50), (40, 48)])
def test_lr_is_pil_bicubic_quarter_of_hr_cropped_to_a_multiple_of_4(tmp_path, save, h, w) -> None:
    rng = np.random.default_rng(h)
    hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    save(tmp_path / "CUFED5" / "007_0.png", hr)
    save(tmp_path / "CUFED5" / "007_2.png", rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    hr_mask = np.zeros((h, w), np.uint8)
    hr_mask[h - 12 :, w - 9 :] = 255  # straddles the cropped-off border when h, w are not multiples of 4
    save(tmp_path / "CUFED5_masks" / "007_2_hr.png", hr_mask)
    save(tmp_path / "CUFED5_masks" / "007_2_ref.png", np.full((30, 20), 255, np.uint8))
    s = Cufed5Dataset(tmp_path, level=2)[0]
    ch, cw = h // 4 * 4, w // 4 * 4
    # Independent computation: crop with numpy, then PIL bicubic down and back up.
    crop = Image.fromarray(np.ascontiguousarray(hr[:ch, :cw]))
    lr = crop.resize((cw // 4, ch // 4), Image.BICUBIC)
    torch.testing.assert_close(s.target, _tensor(hr[:ch, :cw]))
    torch.testing.assert_close(s.meta["lr"], _tensor(lr))
    torch.testing.assert_close(s.conditions["lr_up"], _tensor(lr.resize((cw, ch), Image.BICUBIC)))
    assert s.meta["lr"].shape == (3, h // 4, w // 4) and s.size == (ch, cw) and s.meta["level"] == 2
    torch.testing.assert_close(s.region_mask, torch.from_numpy(hr_mask[:ch, :cw] == 255).float()[None])
    assert s.reference.shape == (3, 30, 20) and s.reference_mask.all()


def test_every_generated_sample_loads_with_the_contract(root) -> None:
    for level in range(1, 6):
        ds = Cufed5Dataset(root, level=level)
        assert ds.ids == ["000", "001", "002", "003"]
        samples = [ds[i] for i in range(len(ds))]
        for s in samples:
            assert s.target.shape == s.conditions["lr_up"].shape == (3, S, S)
            assert s.region_mask.shape == s.reference_mask.shape == (1, S, S)
            if level == 1:
                assert s.region_mask.any() and s.reference_mask.any()
        assert collate(samples)["region_mask"].shape == (4, 1, S, S)
    assert Cufed5Dataset(root, reference_size=(16, 24))[0].reference.shape == (3, 16, 24)


def test_without_mask_folder_masks_are_none(root) -> None:
    shutil.rmtree(root / "CUFED5_masks")
    s = Cufed5Dataset(root)[0]
    assert s.region_mask is None and s.reference_mask is None


def test_empty_and_full_masks_are_allowed(root, inject) -> None:
    """A reference can miss the HR image entirely at the far levels, or cover all of it."""
    inject(root / "CUFED5_masks" / "001_1_hr.png", "empty")
    inject(root / "CUFED5_masks" / "002_1_hr.png", "full")
    inject(root / "CUFED5_masks" / "002_1_ref.png", "full")
    ds = Cufed5Dataset(root)
    assert ds[1].region_mask.sum() == 0
    assert ds[2].region_mask.all() and ds[2].reference_mask.all()


FILES = {"hr": "CUFED5/{}_0.png", "ref": "CUFED5/{}_1.png",
         "hr_mask": "CUFED5_masks/{}_1_hr.png", "ref_mask": "CUFED5_masks/{}_1_ref.png"}
CASES = [(f, fault) for f in FILES for fault in ("missing", "garbage", "truncated")]
CASES += [(f, fault) for f in ("hr_mask", "ref_mask") for fault in ("gradient", "mis-sized", "rescaled")]


@pytest.mark.parametrize(("file", "fault"), CASES)
def test_bad_input_names_sample_and_file(root, inject, fault_reasons, file, fault, assert_names) -> None:
    path = root / FILES[file].format("002")
    inject(path, fault)
    ds = Cufed5Dataset(root, level=1)
    if (file, fault) == ("hr", "missing"):  # the HR file defines the sample: it simply is not listed
        assert ds.ids == ["000", "001", "003"]
        return
    with pytest.raises(SampleError, match=fault_reasons[fault]) as err:
        ds[2]
    assert_names(err.value, "002", path)


@pytest.mark.parametrize(("image", "mask", "of"), [("hr", "hr_mask", "the HR image 002_0.png"),
                                                    ("ref", "ref_mask", "the reference image 002_1.png")])
def test_image_of_another_size_than_its_mask(root, inject, image, mask, of) -> None:
    inject(root / FILES[image].format("002"), "rescaled")
    with pytest.raises(SampleError, match=rf"size {S}x{S} differs from {of} \({2 * S}x{2 * S}\)") as err:
        Cufed5Dataset(root, level=1)[2]
    assert err.value.path == str(root / FILES[mask].format("002"))


def test_too_small_hr(tmp_path, save) -> None:
    save(tmp_path / "CUFED5" / "000_0.png", np.zeros((6, 40, 3), np.uint8))
    with pytest.raises(SampleError, match="too small") as err:
        Cufed5Dataset(tmp_path)[0]
    assert err.value.path == str(tmp_path / "CUFED5" / "000_0.png")


def test_one_bad_sample_leaves_the_others_loadable(root, inject, load_all) -> None:
    inject(root / "CUFED5" / "003_1.png", "garbage")
    ds = Cufed5Dataset(root, level=1)
    loaded, errors = load_all(ds)
    assert (loaded, errors) == (["000", "001", "002"], ["003"])


def test_missing_folder_and_bad_level(root) -> None:
    with pytest.raises(DatasetError, match=str(root.parent / "nowhere" / "CUFED5")):
        Cufed5Dataset(root.parent / "nowhere")
    for level in (0, 6):
        with pytest.raises(ValueError, match="1..5"):
            Cufed5Dataset(root, level=level)
