"""CUFED5 reference-based super-resolution; see docs/datasets.md for the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.api.sample import DatasetError, I2ISample, SampleError
from benchmark.datasets.io import as_size as _tuple
from benchmark.datasets.io import open_image, check_size, image_size, read_image, read_mask, require_dirs, require_root

FORMAT = "CUFED5 (format cufed5)"
SCALE = 4


def bicubic_lr(hr: Image.Image) -> tuple[Image.Image, Image.Image]:
    """Crop HR to a multiple of 4, downsample x1/4 with PIL bicubic; returns (HR crop, LR)."""
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % SCALE, h - h % SCALE))
    return hr, hr.resize((hr.size[0] // SCALE, hr.size[1] // SCALE), Image.BICUBIC)


def _to_tensor(img: Image.Image) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


class Cufed5Dataset:
    """HR image, its reference at a similarity ``level`` (1 = most similar), and the x1/4 LR input.

    Condition: ``lr_up``, the LR image upsampled x4 with PIL bicubic to the HR
    size (the bicubic baseline). ``region_mask`` / ``reference_mask`` come from
    ``CUFED5_masks/{id}_{level}_hr.png`` / ``_ref.png`` when the folder
    ``CUFED5_masks`` exists (then they are required; they may be empty, as a
    reference can miss the HR image); otherwise both are None. The HR mask is
    cropped with the HR image, never resized.

    Each mask must have the size of its image (checked on the files, before
    any crop or resize); a mask may be empty or full (a reference can miss or
    cover the whole HR image: IMACS then says so for that sample). A missing
    root or folder, or no ``*_0.png``, is a :class:`DatasetError`.
    """

    @classmethod
    def from_config(cls, root: Path, ds) -> "Cufed5Dataset":
        """From a task's ``dataset`` section; ``root`` resolved (the folder holding the ``XXX_k.png`` files)."""
        return cls(root, level=ds.level, reference_size=_tuple(ds.reference_size))

    def __init__(self, root: str | Path, level: int = 1, reference_size: tuple[int, int] | None = None):
        if not 1 <= level <= 5:
            raise ValueError(f"CUFED5 reference level must be in 1..5, got {level}")
        self.root, self.level, self.reference_size = Path(root), level, reference_size
        self.folder = self.root / "CUFED5"
        looked_for = f"{self.folder}/*_0.png (HR) and *_1.png .. *_5.png (references)"
        require_root(FORMAT, self.root, looked_for)
        require_dirs(FORMAT, self.root, self.folder)
        self._ids = sorted(p.name[: -len("_0.png")] for p in self.folder.glob("*_0.png"))
        if not self._ids:
            raise DatasetError(FORMAT, str(self.root), "no samples", looked_for)
        self.masks = self.root / "CUFED5_masks"
        self.has_masks = self.masks.is_dir()

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def files(self, i: int) -> dict[str, Path]:
        """The files sample ``i`` reads, by role (they key its stored job): the reference and masks of ``level``;
        ``hr_mask`` and ``reference_mask`` only when the dataset has masks."""
        sid, prefix = self._ids[i], f"{self._ids[i]}_{self.level}"
        f = {"hr": self.folder / f"{sid}_0.png", "reference": self.folder / f"{prefix}.png"}
        if self.has_masks:
            f["hr_mask"], f["reference_mask"] = self.masks / f"{prefix}_hr.png", self.masks / f"{prefix}_ref.png"
        return f

    def __getitem__(self, i: int) -> I2ISample:
        sid, f = self._ids[i], self.files(i)
        hr_img = open_image(f["hr"], sid).convert("RGB")
        if min(hr_img.size) < SCALE * 2:
            raise SampleError(sid, str(f["hr"]), f"HR image {hr_img.size} too small for x{SCALE} super-resolution")
        full_size = hr_img.size[::-1]
        hr_img, lr = bicubic_lr(hr_img)
        lr_up = lr.resize(hr_img.size, Image.BICUBIC)
        h, w = hr_img.size[::-1]
        ref = read_image(f["reference"], sid, self.reference_size)
        region = ref_mask = None
        if "hr_mask" in f:
            check_size(sid, f["hr_mask"], image_size(f["hr_mask"], sid), full_size, f"the HR image {f['hr'].name}")
            check_size(sid, f["reference_mask"], image_size(f["reference_mask"], sid), image_size(f["reference"], sid),
                       f"the reference image {f['reference'].name}")
            # Cropped like HR, never resized: resizing would shift the mask off its pixels.
            region = read_mask(f["hr_mask"], sid, allow_empty=True, allow_full=True)[:, :h, :w].contiguous()
            ref_mask = read_mask(f["reference_mask"], sid, tuple(ref.shape[-2:]), allow_empty=True, allow_full=True)
        return I2ISample(
            sample_id=sid,
            reference=ref,
            reference_mask=ref_mask,
            conditions={"lr_up": _to_tensor(lr_up)},
            target=_to_tensor(hr_img),
            region_mask=region,
            meta={"level": self.level, "lr": _to_tensor(lr)},
        )
