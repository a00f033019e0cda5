"""Helpers for the procedural-generator tests: read a written tree back as bytes and arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> np.ndarray:
    """An image file as float32 in [0, 1]: (H, W, 3) for RGB, (H, W) for greyscale."""
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.float32) / 255.0


@pytest.fixture
def tree():
    """``tree(root)`` -> {relative posix path: file bytes} for every file under root."""
    return _tree


@pytest.fixture
def load():
    return _load
