"""The procedural COCOEE tree: Paint-by-Example's ``test_bench`` layout and its masks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.procedural import generate_cocoee

SIZE = 40


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_cocoee(tmp_path_factory.mktemp("c"), n_train=3, n_test=4, seed=0, size=SIZE)


def test_exact_layout(root) -> None:
    ids = {"train": range(3), "test": range(3, 7)}
    expected = set()
    for split, split_ids in ids.items():
        bench = f"{split}/test_bench"
        expected.add(f"{bench}/id_list.npy")
        for i in split_ids:
            expected |= {f"{bench}/GT_3500/{i:012d}_GT.png", f"{bench}/Ref_3500/{i:012d}_ref.png",
                         f"{bench}/Mask_bbox_3500/{i:012d}_mask.png",
                         f"{bench}/Ref_mask_3500/{i:012d}_ref_mask.png"}  # the extra folder IMACS_r needs
        assert np.load(root / bench / "id_list.npy").tolist() == list(split_ids)
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == expected


def test_masks_are_binary_non_empty_and_the_fill_region_is_a_box(root, load) -> None:
    bench = root / "test" / "test_bench"
    for i in range(3, 7):
        box = load(bench / "Mask_bbox_3500" / f"{i:012d}_mask.png")
        ref_mask = load(bench / "Ref_mask_3500" / f"{i:012d}_ref_mask.png")
        for m in (box, ref_mask):
            assert set(np.unique(m)) == {0.0, 1.0}
        ys, xs = np.nonzero(box)
        assert box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all(), "bbox mask must be a filled box"
        assert load(bench / "GT_3500" / f"{i:012d}_GT.png").shape == (SIZE, SIZE, 3)


def test_an_empty_split_still_gets_an_id_list(tmp_path) -> None:
    root = generate_cocoee(tmp_path, n_train=0, n_test=2, size=32)
    assert np.load(root / "train" / "test_bench" / "id_list.npy").size == 0
