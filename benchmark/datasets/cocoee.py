"""COCOEE (Paint-by-Example's ``test_bench``); see DESIGN.md for the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.api.sample import I2ISample
from benchmark.datasets.io import read_image, read_mask, require_dirs


class CocoeeDataset:
    """Exemplar-based object inpainting.

    ``root`` is the folder that contains ``test_bench``. The box mask (255 =
    fill) is ``region_mask``. When the folder ``Ref_mask_3500`` exists (the
    procedural trees write it; real COCOEE has none), every sample's
    ``{id}_ref_mask.png`` is the reference mask and a missing one is an error;
    without the folder IMACS_r is not applicable (``reference_mask`` is None).
    Conditions: ``masked_image`` (GT with the box greyed out, 0.5) and ``mask``.
    """

    def __init__(self, root: str | Path, size: tuple[int, int] | None = (512, 512),
                 reference_size: tuple[int, int] | None = None):
        self.root, self.size = Path(root), size
        self.reference_size = reference_size or size
        self.bench = self.root / "test_bench"
        gt_dir = self.bench / "GT_3500"
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"COCOEE folder not found: {gt_dir} (expected <root>/test_bench/GT_3500)")
        require_dirs("COCOEE", self.bench / "Ref_3500", self.bench / "Mask_bbox_3500")
        # Decided per dataset, not per sample, so one missing file cannot silently drop IMACS_r for a batch.
        self.has_reference_masks = (self.bench / "Ref_mask_3500").is_dir()
        id_list = self.bench / "id_list.npy"
        if id_list.is_file():
            self._ids = [f"{int(i):012d}" for i in np.load(id_list)]
        else:
            self._ids = sorted(p.name[: -len("_GT.png")] for p in gt_dir.glob("*_GT.png"))

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> I2ISample:
        sid, b = self._ids[i], self.bench
        gt = read_image(b / "GT_3500" / f"{sid}_GT.png", sid, self.size)
        size = tuple(gt.shape[-2:])
        box = read_mask(b / "Mask_bbox_3500" / f"{sid}_mask.png", sid, size)
        ref = read_image(b / "Ref_3500" / f"{sid}_ref.png", sid, self.reference_size)
        ref_mask_path = b / "Ref_mask_3500" / f"{sid}_ref_mask.png"
        ref_mask = read_mask(ref_mask_path, sid, tuple(ref.shape[-2:])) if self.has_reference_masks else None
        return I2ISample(
            sample_id=sid,
            reference=ref,
            reference_mask=ref_mask,
            conditions={"masked_image": gt * (1 - box) + 0.5 * box, "mask": box},
            target=gt,
            region_mask=box,
            meta={},
        )
