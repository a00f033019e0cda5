"""VitonHDDataset on ``zalando-hd-resized`` trees: pairings, mask orientation, and every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from benchmark.api.sample import DatasetError, SampleError, collate
from benchmark.datasets import VitonHDDataset
from benchmark.datasets.io import read_image, read_mask
from benchmark.procedural import generate_viton_hd

H, W = 64, 48
FILES = {  # folder -> file name of sample ``sid`` wearing garment ``cloth`` (both stems)
    "image": lambda sid, cloth: f"{sid}.jpg",
    "cloth": lambda sid, cloth: f"{cloth}.jpg",
    "cloth-mask": lambda sid, cloth: f"{cloth}.jpg",
    "agnostic-v3.2": lambda sid, cloth: f"{sid}.jpg",
    "agnostic-mask": lambda sid, cloth: f"{sid}_mask.png",
    "image-densepose": lambda sid, cloth: f"{sid}.jpg",
}
MASKS = ("cloth-mask", "agnostic-mask")


@pytest.fixture
def root(tmp_path):
    return generate_viton_hd(tmp_path / "zalando-hd-resized", n_train=0, n_test=4, seed=0, size=(H, W))


def _partner(root, sid):
    pairs = dict(line.split() for line in (root / "test_pairs.txt").read_text().splitlines())
    return pairs[f"{sid}.jpg"][: -len(".jpg")]


def test_every_generated_sample_loads_with_the_contract(root) -> None:
    for pairing in ("paired", "unpaired"):
        ds = VitonHDDataset(root, "test", pairing, size=(H, W))
        samples = [ds[i] for i in range(len(ds))]
        assert [s.sample_id for s in samples] == ds.ids == [f"{i:05d}_00" for i in range(4)]
        for s in samples:
            assert s.size == (H, W) and s.reference.shape == (3, H, W)
            for t in (s.reference, *s.conditions.values(), s.meta["photo"]):
                assert t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
            for m in (s.region_mask, s.reference_mask, s.conditions["mask"]):
                assert set(m.unique().tolist()) == {0.0, 1.0}
        batch = collate(samples)
        assert batch["conditions"]["pose"].shape == (4, 3, H, W)
        assert (batch["target"] is None) == (pairing == "unpaired")


def test_paired_uses_own_garment_and_unpaired_the_pairs_file_garment(root) -> None:
    paired, unpaired = VitonHDDataset(root, "test", "paired", size=None), VitonHDDataset(root, "test", "unpaired", size=None)
    d = root / "test"
    for i, sid in enumerate(paired.ids):
        p, u = paired[i], unpaired[i]
        cloth = _partner(root, sid)
        assert cloth != sid
        photo = read_image(d / "image" / f"{sid}.jpg", sid)
        torch.testing.assert_close(p.target, photo)
        torch.testing.assert_close(p.reference, read_image(d / "cloth" / f"{sid}.jpg", sid))
        assert u.target is None, "unpaired has no ground truth"
        torch.testing.assert_close(u.meta["photo"], photo)  # the real-image set for FID/KID
        torch.testing.assert_close(u.reference, read_image(d / "cloth" / f"{cloth}.jpg", sid))
        torch.testing.assert_close(u.reference_mask, read_mask(d / "cloth-mask" / f"{cloth}.jpg", sid))
        assert (p.meta["cloth"], u.meta["cloth"]) == (f"{sid}.jpg", f"{cloth}.jpg")
        for k in p.conditions:  # the person side is the same in both pairings
            torch.testing.assert_close(p.conditions[k], u.conditions[k])


def test_agnostic_mask_255_is_the_region_to_inpaint(tmp_path, save) -> None:
    """A tree written by hand: 255 in agnostic-mask becomes region_mask = 1 (no inversion)."""
    root, sid = tmp_path / "zalando-hd-resized", "01234_00"
    rng = np.random.default_rng(0)
    for folder, name in FILES.items():
        if folder not in MASKS:
            save(root / "test" / folder / name(sid, sid), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    region = np.zeros((H, W), np.uint8)
    region[20:40, 10:30] = 255
    save(root / "test" / "agnostic-mask" / f"{sid}_mask.png", region)
    save(root / "test" / "cloth-mask" / f"{sid}.jpg", np.full((H, W), 255, np.uint8))
    (root / "test_pairs.txt").write_text(f"{sid}.jpg {sid}.jpg\n")
    s = VitonHDDataset(root, "test", "paired", size=(H, W))[0]
    expected = torch.from_numpy(region == 255).float()[None]
    torch.testing.assert_close(s.region_mask, expected)
    torch.testing.assert_close(s.conditions["mask"], expected)
    assert s.reference_mask.all()
    # At 2x the size the same region, upsampled.
    big = VitonHDDataset(root, "test", "paired", size=(2 * H, 2 * W))[0]
    torch.testing.assert_close(big.region_mask, expected.repeat_interleave(2, 1).repeat_interleave(2, 2))


CASES = [(folder, fault) for folder in FILES for fault in ("missing", "garbage", "truncated")]
CASES += [(folder, fault) for folder in MASKS for fault in ("empty", "gradient")]
# Sizes, checked on the files before any resize: every file mis-sized (another aspect ratio); the files
# pixel-aligned with the photo, and the garment mask, also at the same aspect ratio but twice the size.
CASES += [(folder, "mis-sized") for folder in FILES]
CASES += [(folder, "rescaled") for folder in ("agnostic-v3.2", "agnostic-mask", "image-densepose", "cloth-mask")]
CASES += [("agnostic-mask", "full")]  # nothing outside the region: no masked metric, no IMACS_g


@pytest.mark.parametrize("pairing", ["paired", "unpaired"])
@pytest.mark.parametrize(("folder", "fault"), CASES)
def test_bad_input_names_sample_and_file(root, inject, fault_reasons, pairing, folder, fault, assert_names) -> None:
    ds = VitonHDDataset(root, "test", pairing, size=(H, W))
    sid = ds.ids[1]
    cloth = sid if pairing == "paired" else _partner(root, sid)
    path = root / "test" / folder / FILES[folder](sid, cloth)
    inject(path, fault)
    with pytest.raises(SampleError, match=fault_reasons[fault]) as err:
        ds[1]
    assert_names(err.value, sid, path)


def test_photo_with_wrong_aspect(root, save) -> None:
    sid = "00002_00"
    photo = root / "test" / "image" / f"{sid}.jpg"
    save(photo, np.zeros((H, H, 3), np.uint8))  # square instead of 4:3
    with pytest.raises(SampleError, match="aspect ratio") as err:
        VitonHDDataset(root, "test", size=(H, W))[2]
    assert (err.value.sample_id, err.value.path) == (sid, str(photo))
    with pytest.raises(SampleError, match="aspect ratio"):
        VitonHDDataset(root, "test", size=(512, 384))[2]
    # No size requested: the photo no longer matches the images aligned with it.
    with pytest.raises(SampleError, match=f"size {H}x{W} differs from the person image {sid}.jpg") as err:
        VitonHDDataset(root, "test", size=None)[2]
    assert err.value.path == str(root / "test" / "agnostic-v3.2" / f"{sid}.jpg")


def test_size_errors_say_what_the_file_was_compared_with(root, inject) -> None:
    d = root / "test"
    inject(d / "image-densepose" / "00001_00.jpg", "rescaled")
    inject(d / "cloth" / "00002_00.jpg", "mis-sized")
    inject(d / "cloth-mask" / "00003_00.jpg", "rescaled")
    ds = VitonHDDataset(root, "test", "paired", size=(H, W))
    with pytest.raises(SampleError, match=rf"size {2 * H}x{2 * W} differs from the person image 00001_00.jpg "
                                          rf"\({H}x{W}\)"):
        ds[1]
    with pytest.raises(SampleError, match=rf"aspect ratio {H + 8}x{W} does not match the person image 00002_00.jpg "
                                          rf"\({H}x{W}\)"):
        ds[2]
    with pytest.raises(SampleError, match=rf"size {2 * H}x{2 * W} differs from the cloth image 00003_00.jpg "
                                          rf"\({H}x{W}\)"):
        ds[3]


def test_consistently_larger_files_load_at_the_requested_size(root, inject) -> None:
    """Sources larger than the evaluation size (1024x768 for 512x384) are fine when every file agrees."""
    sid = "00002_00"
    for folder, name in FILES.items():
        inject(root / "test" / folder / name(sid, sid), "rescaled")
    s = VitonHDDataset(root, "test", "paired", size=(H, W))[2]
    assert s.size == (H, W) and s.reference.shape == (3, H, W) and s.reference_mask.shape == (1, H, W)
    assert VitonHDDataset(root, "test", "paired", size=None)[2].size == (2 * H, 2 * W)


def test_full_garment_mask_is_allowed(root, inject) -> None:
    """A full reference mask is scorable (IMACS_r then reports "full mask" for the sample); a full agnostic
    mask is not (see the CASES above)."""
    inject(root / "test" / "cloth-mask" / "00000_00.jpg", "full")
    assert VitonHDDataset(root, "test", "paired", size=(H, W))[0].reference_mask.all()


def test_one_bad_sample_leaves_the_others_loadable(root, inject, load_all) -> None:
    inject(root / "test" / "agnostic-v3.2" / "00001_00.jpg", "garbage")
    ds = VitonHDDataset(root, "test", "paired", size=(H, W))
    loaded, errors = load_all(ds)
    assert errors == ["00001_00"]
    assert loaded == ["00000_00", "00002_00", "00003_00"]


def test_missing_pairs_file_or_folder(root) -> None:
    with pytest.raises(DatasetError, match=str(root / "val_pairs.txt")):
        VitonHDDataset(root, "val")
    with pytest.raises(DatasetError, match=str(root.parent / "nowhere" / "test_pairs.txt")):
        VitonHDDataset(root.parent / "nowhere", "test")
    with pytest.raises(DatasetError, match=str(root / "train" / "image")):
        VitonHDDataset(root, "train")  # an empty pairs file but no split folder
    shutil.rmtree(root / "test" / "image-densepose")
    with pytest.raises(DatasetError, match=str(root / "test" / "image-densepose")):
        VitonHDDataset(root, "test")


def test_bad_pairs_line_and_pairing(root) -> None:
    (root / "test_pairs.txt").write_text("00000_00.jpg 00001_00.jpg\n\n00001_00.jpg\n")
    with pytest.raises(ValueError, match=r"test_pairs.txt:3"):
        VitonHDDataset(root, "test")
    with pytest.raises(ValueError, match="pairing"):
        VitonHDDataset(root, "test", "both")
