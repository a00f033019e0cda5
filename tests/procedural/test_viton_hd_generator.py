"""The procedural VITON-HD tree: StableVITON's ``zalando-hd-resized`` layout, pairs and masks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmark.procedural import generate_viton_hd

FOLDERS = {"image": "{}.jpg", "cloth": "{}.jpg", "cloth-mask": "{}.jpg", "agnostic-v3.2": "{}.jpg",
           "agnostic-mask": "{}_mask.png", "image-densepose": "{}.jpg"}
H, W = 64, 48  # 4:3 like the 1024x768 sources


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_viton_hd(tmp_path_factory.mktemp("v") / "zalando-hd-resized", n_train=3, n_test=5,
                             seed=0, size=(H, W))


def _names(root, split):
    return sorted(p.stem for p in (root / split / "image").iterdir())


def test_exact_layout(root) -> None:
    names = {s: _names(root, s) for s in ("train", "test")}
    assert names == {"train": [f"{i:05d}_00" for i in range(3)], "test": [f"{i:05d}_00" for i in range(3, 8)]}
    expected = {"train_pairs.txt", "test_pairs.txt"}
    for split, split_names in names.items():
        expected |= {f"{split}/{folder}/{pattern.format(n)}" for folder, pattern in FOLDERS.items() for n in split_names}
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert written == expected


def test_images_have_the_requested_size(root, load) -> None:
    for p in root.rglob("*.*g"):
        assert load(p).shape[:2] == (H, W), p


def test_pairs_files(root) -> None:
    names = {s: _names(root, s) for s in ("train", "test")}
    line = re.compile(r"^(\d{5}_00)\.jpg (\d{5}_00)\.jpg$")
    train = [line.match(s).groups() for s in (root / "train_pairs.txt").read_text().splitlines()]
    test = [line.match(s).groups() for s in (root / "test_pairs.txt").read_text().splitlines()]
    assert train == [(n, n) for n in names["train"]], "train pairs are paired, as in VITON-HD"
    assert [p for p, _ in test] == names["test"]
    assert sorted(c for _, c in test) == names["test"], "each test garment is used exactly once"
    assert all(p != c for p, c in test), "an unpaired pair must not dress a person in their own garment"


def test_unpaired_needs_two_test_samples(tmp_path) -> None:
    with pytest.raises(ValueError, match="n_test"):
        generate_viton_hd(tmp_path, n_train=1, n_test=1)
    generate_viton_hd(tmp_path / "none", n_train=1, n_test=0, size=(32, 24))
    assert (tmp_path / "none" / "test_pairs.txt").read_text() == ""


def test_masks_are_binary_and_non_empty(root, load) -> None:
    for p in (root / "test" / "agnostic-mask").iterdir():
        m = load(p)
        assert set(np.unique(m)) == {0.0, 1.0}, p  # PNG: exactly binary
        assert 0.05 < m.mean() < 0.9, p
    for p in (root / "test" / "cloth-mask").iterdir():
        m = load(p)  # JPEG: binary up to compression ringing
        assert np.mean((m > 0.25) & (m < 0.75)) < 0.01, p
        assert (m > 0.5).mean() > 0.1, p


def test_agnostic_image_greys_out_exactly_the_mask(root, load) -> None:
    """255 in agnostic-mask = the region to inpaint: grey there in agnostic-v3.2, the photo elsewhere."""
    for name in _names(root, "test"):
        photo = load(root / "test" / "image" / f"{name}.jpg")
        agnostic = load(root / "test" / "agnostic-v3.2" / f"{name}.jpg")
        mask = load(root / "test" / "agnostic-mask" / f"{name}_mask.png") > 0.5
        inner = mask.copy()  # stay clear of JPEG ringing at the edge
        inner[1:-1, 1:-1] = mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        inner[[0, -1]], inner[:, [0, -1]] = False, False
        assert np.abs(agnostic[inner] - 0.5).mean() < 0.02
        assert np.abs(agnostic[~mask] - photo[~mask]).mean() < 0.03
        assert np.abs(photo[inner] - 0.5).mean() > 0.05, "the garment must be under the mask"


def test_garment_is_the_person_s_torso_content(root, load) -> None:
    """Paired consistency: the garment's mean colour shows up inside the person's inpainting region."""
    for name in _names(root, "test"):
        cloth = load(root / "test" / "cloth" / f"{name}.jpg")
        cmask = load(root / "test" / "cloth-mask" / f"{name}.jpg") > 0.5
        photo = load(root / "test" / "image" / f"{name}.jpg")
        region = load(root / "test" / "agnostic-mask" / f"{name}_mask.png") > 0.5
        garment_colour = cloth[cmask].mean(0)
        dist = np.linalg.norm(photo[region] - garment_colour, axis=-1)
        assert np.mean(dist < 0.35) > 0.2
