"""``files(i)`` of the COCOEE and CUFED5 loaders: exactly the files a sample reads, whose contents key its job."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.datasets import CocoeeDataset, Cufed5Dataset
from benchmark.procedural import generate_cocoee, generate_cufed5
from benchmark.registry import DATASET_FORMATS
from benchmark.run.runner import sample_digest
from benchmark.store import DigestCache

S = 32
# (format, with masks, CUFED5 level): COCOEE with and without Ref_mask_3500, CUFED5 with and without CUFED5_masks.
CASES = [pytest.param(("cocoee", True, None), id="cocoee-masks"),
         pytest.param(("cocoee", False, None), id="cocoee-no_masks"),
         pytest.param(("cufed5", True, 1), id="cufed5-masks-level1"),
         pytest.param(("cufed5", True, 4), id="cufed5-masks-level4"),
         pytest.param(("cufed5", False, 2), id="cufed5-no_masks-level2")]


def _expected(fmt: str, root: Path, sid: str, masks: bool, level: int | None) -> set[Path]:
    """The files of sample ``sid`` as docs/datasets.md names them, written out independently of the loaders."""
    if fmt == "cocoee":
        b = root / "test_bench"
        names = {b / "GT_3500" / f"{sid}_GT.png", b / "Ref_3500" / f"{sid}_ref.png",
                 b / "Mask_bbox_3500" / f"{sid}_mask.png"}
        return names | ({b / "Ref_mask_3500" / f"{sid}_ref_mask.png"} if masks else set())
    names = {root / "CUFED5" / f"{sid}_0.png", root / "CUFED5" / f"{sid}_{level}.png"}
    m = root / "CUFED5_masks"
    return names | ({m / f"{sid}_{level}_hr.png", m / f"{sid}_{level}_ref.png"} if masks else set())


@pytest.fixture(params=CASES)
def case(request, tmp_path):
    """(dataset, its root, with masks, level) on a generated tree of 3 samples."""
    fmt, masks, level = request.param
    if fmt == "cocoee":
        root = generate_cocoee(tmp_path / "data", n_train=0, n_test=3, seed=0, size=S) / "test"
        if not masks:
            shutil.rmtree(root / "test_bench" / "Ref_mask_3500")
        return CocoeeDataset(root, size=(S, S)), fmt, root, masks, level
    root = generate_cufed5(tmp_path / "data", n_train=0, n_test=3, seed=0, size=S) / "test"
    if not masks:
        shutil.rmtree(root / "CUFED5_masks")
    return Cufed5Dataset(root, level=level), fmt, root, masks, level


def test_files_are_the_layout_files_and_exactly_what_getitem_opens(case, monkeypatch) -> None:
    ds, fmt, root, masks, level = case
    opened: list[Path] = []
    real_open = Image.open

    def spy(fp, *args, **kwargs):
        opened.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    for i, sid in enumerate(ds.ids):
        files = ds.files(i)
        assert set(files.values()) == _expected(fmt, root, sid, masks, level)
        assert all(p.is_file() for p in files.values())
        opened.clear()
        ds[i]
        assert set(opened) == set(files.values())


def test_editing_a_file_in_place_changes_only_its_samples_digest(case, tmp_path) -> None:
    ds, *_ = case
    cache = DigestCache(tmp_path / "d.json")
    before = [sample_digest(ds, i, cache) for i in range(len(ds))]
    assert len(set(before)) == len(ds)
    for role, path in ds.files(1).items():
        with Image.open(path) as img:
            arr = np.array(img)
        arr.flat[0] ^= 0xFF  # one pixel (a mask stays binary)
        Image.fromarray(arr).save(path)
        after = [sample_digest(ds, i, cache) for i in range(len(ds))]
        assert after[1] != before[1], f"editing {role} ({path.name}) left the digest of sample 1 unchanged"
        assert [after[0], after[2]] == [before[0], before[2]]
        before = after


def test_every_registered_format_resolves_to_a_loader_with_files() -> None:
    for name in DATASET_FORMATS.names():
        assert callable(DATASET_FORMATS.get(name).files)


def test_a_loader_without_files_is_a_type_error_when_resolved(monkeypatch) -> None:
    class NoFiles:
        ids: list[str] = []

        def __getitem__(self, i):
            raise IndexError(i)

    monkeypatch.setitem(sys.modules, "no_files_loader", types.SimpleNamespace(NoFiles=NoFiles))
    formats = type(DATASET_FORMATS)("dataset format")
    formats.add("lazy", "no_files_loader:NoFiles")
    formats.add("eager", NoFiles)
    for name in ("lazy", "lazy", "eager"):  # twice: a lazy entry stays checked once its class is imported
        with pytest.raises(TypeError, match=rf"dataset format '{name}'.*NoFiles.*must define files\(i\)"):
            formats.get(name)
