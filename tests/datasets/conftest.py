"""Fixture trees in the real layouts and the faults injected into them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Each fault and the words its SampleError must use.
FAULT_REASONS = {
    "missing": "missing",
    "garbage": "unreadable",
    "truncated": "truncated",
    "empty": "empty",
    "gradient": "not binary",
    "full": "mask is full",
    "mis-sized": "differs from|does not match",  # exact size (aligned files) or aspect ratio (garment)
    "rescaled": "differs from",
}


def _save(path: Path, arr: np.ndarray) -> None:
    """Write uint8 (H, W) or (H, W, 3); the suffix picks PNG or JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(arr).save(path, **kwargs)


def _size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size[::-1]


def _inject(path: Path, fault: str) -> None:
    """Break ``path`` in place: remove it, replace it with garbage, cut it, make it a bad (empty, full,
    grey) mask, or change its size (same content, resized: a file of another sample or preprocessing)."""
    if fault == "missing":
        path.unlink()
    elif fault == "garbage":
        path.write_bytes(b"this is not an image\x00\xff" * 8)
    elif fault == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.6)])  # cut inside the pixel data
    elif fault in ("empty", "gradient"):
        h, w = _size_of(path)
        mask = np.zeros((h, w), np.uint8) if fault == "empty" else np.tile(np.linspace(0, 255, w), (h, 1)).astype(np.uint8)
        _save(path, mask)
    elif fault == "full":
        _save(path, np.full(_size_of(path), 255, np.uint8))
    elif fault in ("mis-sized", "rescaled"):
        # mis-sized: 8 rows more (another aspect ratio); rescaled: twice the size (same aspect ratio)
        with Image.open(path) as img:
            w, h = img.size
            new = (w, h + 8) if fault == "mis-sized" else (2 * w, 2 * h)
            _save(path, np.asarray(img.resize(new, Image.NEAREST)))
    else:
        raise ValueError(fault)


@pytest.fixture
def inject():
    return _inject


@pytest.fixture
def save():
    return _save


@pytest.fixture
def fault_reasons():
    return FAULT_REASONS


def _load_all(ds) -> tuple[list[str], list[str]]:
    """Iterate a dataset: (ids that loaded, ids whose SampleError was raised)."""
    from benchmark.api.sample import SampleError

    loaded, errors = [], []
    for i in range(len(ds)):
        try:
            loaded.append(ds[i].sample_id)
        except SampleError as err:
            errors.append(err.sample_id)
    return loaded, errors


def _assert_names(err, sample_id: str, path) -> None:
    """A SampleError carries and states both the sample id and the file."""
    assert (err.sample_id, err.path) == (sample_id, str(path))
    assert repr(sample_id) in str(err) and str(path) in str(err)


@pytest.fixture
def load_all():
    return _load_all


@pytest.fixture
def assert_names():
    return _assert_names
