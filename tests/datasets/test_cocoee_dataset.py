"""CocoeeDataset on ``test_bench`` trees: box orientation, optional reference masks, every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from benchmark.api.sample import DatasetError, SampleError, collate
from benchmark.datasets import CocoeeDataset
from benchmark.procedural import generate_cocoee

S = 32
FILES = {"GT_3500": "{}_GT.png", "Ref_3500": "{}_ref.png", "Mask_bbox_3500": "{}_mask.png",
         "Ref_mask_3500": "{}_ref_mask.png"}
MASKS = ("Mask_bbox_3500", "Ref_mask_3500")


@pytest.fixture
def root(tmp_path):
    """The folder that contains ``test_bench`` (ids 000000000000 .. 000000000003)."""
    return generate_cocoee(tmp_path, n_train=0, n_test=4, seed=0, size=S) / "test"


def test_every_generated_sample_loads_with_the_contract(root) -> None:
    ds = CocoeeDataset(root, size=(S, S))
    assert ds.ids == [f"{i:012d}" for i in range(4)]
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        assert s.size == (S, S) and s.reference.shape == (3, S, S)
        assert s.reference_mask.shape == (1, S, S) and s.reference_mask.any()
        assert set(s.region_mask.unique().tolist()) == {0.0, 1.0}
    assert collate(samples)["reference_mask"].shape == (4, 1, S, S)
    assert CocoeeDataset(root, size=(64, 64), reference_size=(16, 16))[0].reference.shape == (3, 16, 16)


def test_box_255_is_the_region_to_fill(tmp_path, save) -> None:
    """A tree written by hand, without id_list.npy and Ref_mask_3500 (as the real benchmark ships)."""
    bench, rng = tmp_path / "test_bench", np.random.default_rng(0)
    for sid in ("000000000139", "000000000285"):
        gt = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
        save(bench / "GT_3500" / f"{sid}_GT.png", gt)
        save(bench / "Ref_3500" / f"{sid}_ref.png", rng.integers(0, 256, (S, S, 3), dtype=np.uint8))
        box = np.zeros((S, S), np.uint8)
        box[5:20, 8:30] = 255
        save(bench / "Mask_bbox_3500" / f"{sid}_mask.png", box)
    ds = CocoeeDataset(tmp_path, size=(S, S))
    assert ds.ids == ["000000000139", "000000000285"]  # from the file names when id_list.npy is absent
    s = ds[1]
    expected = torch.from_numpy(box == 255).float()[None]
    torch.testing.assert_close(s.region_mask, expected)
    torch.testing.assert_close(s.conditions["mask"], expected)
    target = torch.from_numpy(gt).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(s.target, target)
    torch.testing.assert_close(s.conditions["masked_image"], target * (1 - expected) + 0.5 * expected)
    assert s.reference_mask is None, "no Ref_mask_3500: IMACS_r is not applicable"


def test_id_list_sets_the_order_and_accepts_int_ids(root) -> None:
    np.save(root / "test_bench" / "id_list.npy", np.array([3, 1]))
    ds = CocoeeDataset(root, size=(S, S))
    assert ds.ids == ["000000000003", "000000000001"]
    assert ds[0].sample_id == "000000000003"


def test_without_reference_mask_folder_reference_mask_is_none(root) -> None:
    shutil.rmtree(root / "test_bench" / "Ref_mask_3500")
    ds = CocoeeDataset(root, size=(S, S))
    assert all(ds[i].reference_mask is None for i in range(len(ds)))
    assert collate([ds[0], ds[1]])["reference_mask"] is None


CASES = [(folder, fault) for folder in FILES for fault in ("missing", "garbage", "truncated")]
CASES += [(folder, fault) for folder in MASKS for fault in ("empty", "gradient", "mis-sized", "rescaled")]
CASES += [("Mask_bbox_3500", "full")]  # nothing outside the box: no masked metric, no IMACS_g


@pytest.mark.parametrize(("folder", "fault"), CASES)
def test_bad_input_names_sample_and_file(root, inject, fault_reasons, folder, fault, assert_names) -> None:
    ds, sid = CocoeeDataset(root, size=(S, S)), "000000000002"
    path = root / "test_bench" / folder / FILES[folder].format(sid)
    inject(path, fault)
    with pytest.raises(SampleError, match=fault_reasons[fault]) as err:
        ds[2]
    assert_names(err.value, sid, path)


@pytest.mark.parametrize(("image", "mask", "of"), [("GT_3500", "Mask_bbox_3500", "the GT image"),
                                                    ("Ref_3500", "Ref_mask_3500", "the reference image")])
def test_image_of_another_size_than_its_mask(root, inject, image, mask, of) -> None:
    """The image is the odd one out: the error still names the mask file and says what it was compared with."""
    sid = "000000000001"
    inject(root / "test_bench" / image / FILES[image].format(sid), "mis-sized")
    with pytest.raises(SampleError, match=rf"size {S}x{S} differs from {of} {sid}_\w+.png \({S + 8}x{S}\)") as err:
        CocoeeDataset(root, size=(S, S))[1]
    assert err.value.path == str(root / "test_bench" / mask / FILES[mask].format(sid))


def test_full_reference_mask_is_allowed(root, inject) -> None:
    inject(root / "test_bench" / "Ref_mask_3500" / "000000000000_ref_mask.png", "full")
    assert CocoeeDataset(root, size=(S, S))[0].reference_mask.all()


def test_one_bad_sample_leaves_the_others_loadable(root, inject, load_all) -> None:
    inject(root / "test_bench" / "GT_3500" / "000000000001_GT.png", "truncated")
    ds = CocoeeDataset(root, size=(S, S))
    loaded, errors = load_all(ds)
    assert errors == ["000000000001"]
    assert loaded == ["000000000000", "000000000002", "000000000003"]


@pytest.mark.parametrize("folder", ["GT_3500", "Ref_3500", "Mask_bbox_3500"])
def test_missing_folder(root, folder) -> None:
    shutil.rmtree(root / "test_bench" / folder)
    with pytest.raises(DatasetError, match=str(root / "test_bench" / folder)):
        CocoeeDataset(root)
    with pytest.raises(DatasetError, match="test_bench"):
        CocoeeDataset(root.parent / "nowhere")
