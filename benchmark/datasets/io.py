"""Image reading and the checks of a layout, with errors that name the sample (or the dataset) and the file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

from benchmark.api.sample import DatasetError, SampleError


def read_image(path: Path, sample_id: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an RGB image as (3, H, W) float32 in [0, 1], resized (bicubic) to ``size`` = (H, W) if given."""
    img = open_image(path, sample_id).convert("RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BICUBIC)
    import torch  # here, not at the top: planning a run opens datasets without loading torch

    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def read_mask(path: Path, sample_id: str, size: tuple[int, int] | None = None, *,
              allow_empty: bool = False, allow_full: bool = False) -> torch.Tensor:
    """Read a binary mask as (1, H, W) float32 in {0, 1} (pixels >= 128 are 1).

    Grey levels from JPEG compression or resizing are thresholded; a mask with
    many mid-grey pixels is not a mask and is rejected, as is an empty one
    unless ``allow_empty`` and a full one unless ``allow_full``
    (:func:`check_coverage`).
    """
    img = open_image(path, sample_id).convert("L")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.NEAREST)
    arr = np.asarray(img, dtype=np.uint8)
    grey = np.mean((arr > 64) & (arr < 192))
    if grey > 0.05:
        raise SampleError(sample_id, str(path), f"mask is not binary ({grey:.0%} of pixels are mid-grey)")
    mask = arr >= 128
    check_coverage(mask, sample_id, path, allow_empty=allow_empty, allow_full=allow_full)
    import torch

    return torch.from_numpy(mask.astype(np.float32))[None]


def check_coverage(mask: np.ndarray, sample_id: str, path: Path, *, allow_empty: bool = False,
                   allow_full: bool = False) -> None:
    """Reject a binary mask (any shape, bool) that covers nothing or everything.

    An inpainting mask needs both sides: with nothing inside there is nothing
    to fill, with nothing outside the masked metrics and IMACS (whose penalty
    term is a mean over the outside) have no defined value and the sample
    would only enter the means as a silent special case. Masks for which
    either is a legitimate state (a reference that misses, or covers, the whole
    image) pass ``allow_empty`` / ``allow_full``.
    """
    if not allow_empty and not mask.any():
        raise SampleError(sample_id, str(path), "mask is empty")
    if not allow_full and mask.all():
        raise SampleError(sample_id, str(path), "mask is full (no pixel outside the region)")


def open_image(path: Path, sample_id: str) -> Image.Image:
    """Open and fully decode ``path``; any failure is a SampleError naming the sample and the file."""
    if not path.is_file():
        raise SampleError(sample_id, str(path), "file is missing")
    try:
        # The context manager closes the file on failure too (PIL keeps it open when load() raises).
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError(sample_id, str(path), f"image is unreadable or truncated: {err}") from err
    return img


def image_size(path: Path, sample_id: str) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding the pixels."""
    if not path.is_file():
        raise SampleError(sample_id, str(path), "file is missing")
    try:
        with Image.open(path) as img:
            return img.size[::-1]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError(sample_id, str(path), f"image is unreadable: {err}") from err


def require_root(format: str, root: Path, looked_for: str) -> None:
    """Raise :class:`DatasetError` when the dataset root folder does not exist."""
    if not root.is_dir():
        raise DatasetError(format, str(root), "the root folder does not exist", looked_for)


def require_dirs(format: str, root: Path, *dirs: Path) -> None:
    """Raise :class:`DatasetError` naming every missing folder of a dataset layout."""
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise DatasetError(format, str(root), f"folder(s) not found: {', '.join(missing)}",
                           ", ".join(str(d) + "/" for d in dirs))


def check_aspect(sample_id: str, path: Path, got: tuple[int, int], want: tuple[int, int], tol: float = 0.02,
                 of: str = "") -> None:
    """Reject an image whose aspect ratio differs from ``want`` (both (H, W)) by more than ``tol``.

    ``of`` names what ``want`` is the size of (e.g. "the person image"), for the message."""
    r_got, r_want = got[0] / got[1], want[0] / want[1]
    if abs(r_got - r_want) / r_want > tol:
        target = f"{of} ({want[0]}x{want[1]})" if of else f"{want[0]}x{want[1]}"
        raise SampleError(sample_id, str(path), f"aspect ratio {got[0]}x{got[1]} does not match {target}")


def check_size(sample_id: str, path: Path, got: tuple[int, int], want: tuple[int, int], of: str) -> None:
    """Reject an image whose (H, W) ``got`` is not ``want``, the size of ``of`` (the image it is aligned with).

    Checked on the files' own sizes, before any resize: resizing would hide a
    file that belongs to another sample or another preprocessing."""
    if tuple(got) != tuple(want):
        raise SampleError(sample_id, str(path), f"size {got[0]}x{got[1]} differs from {of} ({want[0]}x{want[1]})")


def as_size(value) -> tuple[int, int] | None:
    """A config's ``[H, W]`` (or None: native size) as a tuple."""
    return tuple(value) if value else None
