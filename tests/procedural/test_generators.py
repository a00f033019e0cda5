"""Properties every procedural generator shares: determinism, output pinned to the data version,
each sample drawn and written once, disjoint splits. (Speed is not a test's business: it depends on
the machine's load; ``python -m benchmark perf`` is where it is measured.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.procedural import GENERATORS, drawing, generate_viton_hd
from benchmark.training.embedded import DATA_VERSION

TINY = {"viton_hd": {"size": (32, 24)}, "cocoee": {"size": 32}, "cufed5": {"size": 32}}
# The file whose content depends on every random draw of a sample, per generator.
MAIN_IMAGE = {"viton_hd": "/image/", "cocoee": "/GT_3500/", "cufed5": "_0.png"}
# Image files per sample: VITON-HD's six folders; COCOEE's GT, reference, box and reference masks;
# CUFED5's HR image, five references and an HR and a reference mask per level.
FILES_PER_SAMPLE = {"viton_hd": 6, "cocoee": 4, "cufed5": 1 + 5 + 2 * 5}
# Fingerprints of the pixels each generator draws (TINY sizes, n_train=2, n_test=2, seed 0), per
# DATA_VERSION. Cached trees (``ensure_data``, which training reads) are keyed by DATA_VERSION, so a
# generator whose output changes without a bump would silently reuse stale data: change both together.
# Version 2's values were taken from generators that rewrite the cached v2 trees byte for byte.
FINGERPRINTS = {
    2: {"viton_hd": "87a45770bf8bf2b0", "cocoee": "bb33fc832d07e71b", "cufed5": "f51df305ed69b191"},
}


def _record_writes(monkeypatch) -> list[tuple[Path, np.ndarray]]:
    """Record every image a generator draws (path, array as passed to ``save_image``), still writing it."""
    writes, save = [], drawing.save_image

    def recording(path, img):
        writes.append((Path(path), np.array(img, copy=True)))
        save(path, img)

    monkeypatch.setattr(drawing, "save_image", recording)
    return writes


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """The 8-bit pixels a drawn image should become: bool masks -> 0/255, floats in [0, 1] rounded."""
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    return np.floor(np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_gives_byte_identical_trees_and_another_seed_differs(name, tmp_path, tree) -> None:
    gen, kw = GENERATORS[name], TINY[name]
    a = tree(gen(tmp_path / "a", n_train=2, n_test=3, seed=7, **kw))
    b = tree(gen(tmp_path / "b", n_train=2, n_test=3, seed=7, **kw))
    c = tree(gen(tmp_path / "c", n_train=2, n_test=3, seed=8, **kw))
    assert a and a.keys() == b.keys() == c.keys()
    assert a == b
    main = [k for k in a if MAIN_IMAGE[name] in k]
    assert len(main) == 5
    assert all(a[k] != c[k] for k in main), "every main image must change with the seed"
    same = sum(a[k] == c[k] for k in a)
    assert same < len(a) / 2, f"{same}/{len(a)} files identical across seeds"


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_no_temporary_files_left(name, tmp_path) -> None:
    root = GENERATORS[name](tmp_path / name, n_train=1, n_test=2, seed=0, **TINY[name])
    assert not [p for p in root.rglob("*.tmp")]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_each_sample_is_drawn_once_and_each_file_written_once(name, tmp_path, monkeypatch, tree) -> None:
    """The work is counted, not timed: (n_train + n_test) x files-per-sample writes, no path written
    twice (nothing drawn and thrown away, nothing overwritten), and exactly those files on disk."""
    writes = _record_writes(monkeypatch)
    root = GENERATORS[name](tmp_path / name, n_train=3, n_test=4, seed=0, **TINY[name])
    paths = [p.relative_to(root).as_posix() for p, _ in writes]
    assert len(paths) == FILES_PER_SAMPLE[name] * (3 + 4)
    assert len(set(paths)) == len(paths)
    images = {k for k in tree(root) if k.endswith((".png", ".jpg"))}
    assert set(paths) == images


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_files_hold_the_pixels_that_were_drawn(name, tmp_path, monkeypatch) -> None:
    """PNG is lossless: the file decodes to the drawn pixels exactly. JPEG (quality 95, no chroma
    subsampling) stays within a few grey levels on average (up to ~3.2 on the busiest tiny garments;
    another sample's image would be tens of levels off)."""
    writes = _record_writes(monkeypatch)
    GENERATORS[name](tmp_path / name, n_train=1, n_test=2, seed=0, **TINY[name])
    for path, img in writes:
        with Image.open(path) as f:
            stored = np.asarray(f)
        expected = _as_uint8(img)
        assert stored.shape == expected.shape, path
        if path.suffix == ".png":
            np.testing.assert_array_equal(stored, expected, err_msg=str(path))
        else:
            assert np.abs(stored.astype(int) - expected).mean() < 6.0, path


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_output_is_pinned_to_the_data_version(name, tmp_path, monkeypatch, tree) -> None:
    writes = _record_writes(monkeypatch)
    root = GENERATORS[name](tmp_path / name, n_train=2, n_test=2, seed=0, **TINY[name])
    h = hashlib.sha256()
    for path, img in writes:
        pixels = _as_uint8(img)
        h.update(f"{path.relative_to(root).as_posix()} {pixels.shape}".encode())
        h.update(pixels.tobytes())
    for key, data in tree(root).items():  # pairs files and id lists: their content, not their encoding
        if key.endswith(".txt"):
            h.update(key.encode() + data)
        elif key.endswith(".npy"):
            h.update(key.encode() + str(np.load(root / key).tolist()).encode())
    assert DATA_VERSION in FINGERPRINTS, f"DATA_VERSION is {DATA_VERSION}: record the generators' fingerprints for it"
    assert h.hexdigest()[:16] == FINGERPRINTS[DATA_VERSION][name], (
        f"the {name} generator's output changed: bump DATA_VERSION in benchmark/training/embedded.py "
        "and record the new fingerprint")


def test_split_ids_never_overlap(tmp_path) -> None:
    from benchmark.procedural import generate_cocoee, generate_cufed5

    v = generate_viton_hd(tmp_path / "v", n_train=3, n_test=3, seed=0, size=(32, 24))
    vn = {s: {p.stem for p in (v / s / "image").iterdir()} for s in ("train", "test")}
    c = generate_cocoee(tmp_path / "c", n_train=3, n_test=3, seed=0, size=32)
    cn = {s: set(np.load(c / s / "test_bench" / "id_list.npy").tolist()) for s in ("train", "test")}
    f = generate_cufed5(tmp_path / "f", n_train=3, n_test=3, seed=0, size=32)
    fn = {s: {p.name[:-6] for p in (f / s / "CUFED5").glob("*_0.png")} for s in ("train", "test")}
    for names in (vn, cn, fn):
        assert len(names["train"]) == len(names["test"]) == 3
        assert not names["train"] & names["test"]
