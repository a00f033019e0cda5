"""Datasets that yield no samples at all: a DatasetError naming root, format and what was looked for;
``check_dataset``, the count or the problem that ``validate`` reports."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.api.sample import DatasetError
from benchmark.config import DatasetConfig, TaskConfig
from benchmark.datasets import CocoeeDataset, Cufed5Dataset, VitonHDDataset
from benchmark.datasets.viton_hd import FOLDERS
from benchmark.procedural import generate_cocoee
from benchmark.run.tasks import check_dataset


def _empty_layout(root, fmt: str) -> None:
    """Every folder of the layout (and an empty pairs file), no image."""
    if fmt == "viton_hd":
        for f in FOLDERS:
            (root / "test" / f).mkdir(parents=True)
        (root / "test_pairs.txt").write_text("")
    elif fmt == "cocoee":
        for f in ("GT_3500", "Ref_3500", "Mask_bbox_3500"):
            (root / "test_bench" / f).mkdir(parents=True)
    else:
        (root / "CUFED5").mkdir(parents=True)


FORMATS = {  # format -> (dataset class, words of the format, what the error must say it looked for)
    "viton_hd": (VitonHDDataset, "VITON-HD (format viton_hd)", "test_pairs.txt"),
    "cocoee": (CocoeeDataset, "COCOEE (format cocoee)", "test_bench/GT_3500/*_GT.png"),
    "cufed5": (Cufed5Dataset, "CUFED5 (format cufed5)", "CUFED5/*_0.png"),
}


def _task(fmt: str, root) -> TaskConfig:
    return TaskConfig(name=f"t-{fmt}", version=1, dataset=DatasetConfig(format=fmt, root=str(root)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_root(tmp_path, fmt) -> None:
    cls, words, looked_for = FORMATS[fmt]
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="the root folder does not exist") as err:
        cls(root)
    msg = str(err.value)
    assert err.value.root == str(root) and f"{words} dataset at {root}:" in msg
    assert looked_for in msg and looked_for in err.value.looked_for
    assert isinstance(err.value, FileNotFoundError)  # callers that catch missing files keep working
    n, problem = check_dataset(_task(fmt, root))
    assert (n, problem) == (0, msg)


@pytest.mark.parametrize("fmt", FORMATS)
def test_layout_without_samples(tmp_path, fmt) -> None:
    cls, words, looked_for = FORMATS[fmt]
    root = tmp_path / "data"
    _empty_layout(root, fmt)
    reason = "lists no pairs" if fmt == "viton_hd" else "no samples"
    with pytest.raises(DatasetError, match=reason) as err:
        cls(root)
    msg = str(err.value)
    assert f"{words} dataset at {root}:" in msg and looked_for in msg
    assert check_dataset(_task(fmt, root)) == (0, msg)


def test_viton_hd_pairs_without_photos(tmp_path) -> None:
    root = tmp_path / "zalando-hd-resized"
    _empty_layout(root, "viton_hd")
    (root / "test_pairs.txt").write_text("00000_00.jpg 00001_00.jpg\n00001_00.jpg 00000_00.jpg\n")
    with pytest.raises(DatasetError, match="none of the 2 persons in test_pairs.txt has a photo") as err:
        VitonHDDataset(root)
    assert str(root / "test" / "image" / "00000_00.jpg") in str(err.value)


def test_cocoee_id_list_without_images(tmp_path) -> None:
    _empty_layout(tmp_path, "cocoee")
    np.save(tmp_path / "test_bench" / "id_list.npy", np.array([139, 285]))
    with pytest.raises(DatasetError, match="none of the 2 ids in .*id_list.npy has a GT image") as err:
        CocoeeDataset(tmp_path)
    assert "test_bench/GT_3500/{id:012d}_GT.png" in str(err.value)


def test_missing_layout_folder_names_it(tmp_path) -> None:
    (tmp_path / "test_bench" / "GT_3500").mkdir(parents=True)
    with pytest.raises(DatasetError, match="folder.s. not found") as err:
        CocoeeDataset(tmp_path)
    reason = err.value.reason  # only the missing folders, in the message too
    assert str(tmp_path / "test_bench" / "Ref_3500") in reason and str(tmp_path / "test_bench" / "Mask_bbox_3500") in reason
    assert "GT_3500" not in reason and reason in str(err.value)


def test_check_dataset_counts_a_good_dataset(tmp_path) -> None:
    root = generate_cocoee(tmp_path, n_train=0, n_test=3, seed=0, size=16) / "test"
    assert check_dataset(_task("cocoee", root)) == (3, None)


def test_check_dataset_reports_a_malformed_pairs_file(tmp_path) -> None:
    root = tmp_path / "zalando-hd-resized"
    _empty_layout(root, "viton_hd")
    (root / "test_pairs.txt").write_text("00000_00.jpg\n")
    n, problem = check_dataset(_task("viton_hd", root))
    assert n == 0 and "test_pairs.txt:1: expected '<person>.jpg <cloth>.jpg'" in problem


def test_check_dataset_counts_the_embedded_tree_without_generating_it() -> None:
    from benchmark.training.embedded import EMBEDDED_TASKS

    task = TaskConfig(name="t", version=1, dataset=DatasetConfig(format="cufed5"))
    assert check_dataset(task) == (EMBEDDED_TASKS["super_resolution"].n_test, None)
