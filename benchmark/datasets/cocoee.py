"""COCOEE (Paint-by-Example's ``test_bench``); see docs/datasets.md for the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.api.sample import DatasetError, I2ISample
from benchmark.datasets.io import as_size as _tuple
from benchmark.datasets.io import check_size, image_size, read_image, read_mask, require_dirs, require_root

FORMAT = "COCOEE (format cocoee)"


class CocoeeDataset:
    """Exemplar-based object inpainting.

    ``root`` is the folder that contains ``test_bench``. The box mask (255 =
    fill) is ``region_mask``. When the folder ``Ref_mask_3500`` exists (the
    procedural trees write it; real COCOEE has none), every sample's
    ``{id}_ref_mask.png`` is the reference mask and a missing one is an error;
    without the folder IMACS_r is not applicable (``reference_mask`` is None).
    Conditions: ``masked_image`` (GT with the box greyed out, 0.5) and ``mask``.

    The box mask must have the GT image's size and the reference mask the
    reference's (checked on the files, before any resize); an empty or full
    box (nothing to fill, or nothing to keep) is a :class:`SampleError`, as is
    an empty reference mask. A missing root or folder, or no sample, is a
    :class:`DatasetError`.
    """

    @classmethod
    def from_config(cls, root: Path, ds) -> "CocoeeDataset":
        """From a task's ``dataset`` section; ``root`` resolved (the folder holding ``test_bench``)."""
        return cls(root, size=_tuple(ds.size), reference_size=_tuple(ds.reference_size))

    def __init__(self, root: str | Path, size: tuple[int, int] | None = (512, 512),
                 reference_size: tuple[int, int] | None = None):
        self.root, self.size = Path(root), size
        self.reference_size = reference_size or size
        self.bench = self.root / "test_bench"
        gt_dir = self.bench / "GT_3500"
        require_root(FORMAT, self.root, f"{gt_dir}/*_GT.png, {self.bench}/Ref_3500/, {self.bench}/Mask_bbox_3500/")
        require_dirs(FORMAT, self.root, gt_dir, self.bench / "Ref_3500", self.bench / "Mask_bbox_3500")
        # Decided per dataset, not per sample, so one missing file cannot silently drop IMACS_r for a batch.
        self.has_reference_masks = (self.bench / "Ref_mask_3500").is_dir()
        id_list = self.bench / "id_list.npy"
        if id_list.is_file():
            self._ids = [f"{int(i):012d}" for i in np.load(id_list)]
            if not any((gt_dir / f"{sid}_GT.png").is_file() for sid in self._ids):
                raise DatasetError(FORMAT, str(self.root), f"none of the {len(self._ids)} ids in {id_list} has a "
                                                           "GT image", f"{gt_dir}/{{id:012d}}_GT.png")
        else:
            self._ids = sorted(p.name[: -len("_GT.png")] for p in gt_dir.glob("*_GT.png"))
            if not self._ids:
                raise DatasetError(FORMAT, str(self.root), "no samples", f"{gt_dir}/*_GT.png")

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def files(self, i: int) -> dict[str, Path]:
        """The files sample ``i`` reads, by role (they key its stored job); ``reference_mask`` only when the
        dataset has reference masks."""
        sid, b = self._ids[i], self.bench
        f = {"gt": b / "GT_3500" / f"{sid}_GT.png", "reference": b / "Ref_3500" / f"{sid}_ref.png",
             "box_mask": b / "Mask_bbox_3500" / f"{sid}_mask.png"}
        if self.has_reference_masks:
            f["reference_mask"] = b / "Ref_mask_3500" / f"{sid}_ref_mask.png"
        return f

    def __getitem__(self, i: int) -> I2ISample:
        sid, f = self._ids[i], self.files(i)
        check_size(sid, f["box_mask"], image_size(f["box_mask"], sid), image_size(f["gt"], sid),
                   f"the GT image {f['gt'].name}")
        if "reference_mask" in f:
            check_size(sid, f["reference_mask"], image_size(f["reference_mask"], sid), image_size(f["reference"], sid),
                       f"the reference image {f['reference'].name}")
        gt = read_image(f["gt"], sid, self.size)
        size = tuple(gt.shape[-2:])
        box = read_mask(f["box_mask"], sid, size)
        ref = read_image(f["reference"], sid, self.reference_size)
        # an object filling its whole reference crop is scorable: IMACS_r says "full mask" for that sample
        ref_mask = (read_mask(f["reference_mask"], sid, tuple(ref.shape[-2:]), allow_full=True)
                    if "reference_mask" in f else None)
        return I2ISample(
            sample_id=sid,
            reference=ref,
            reference_mask=ref_mask,
            conditions={"masked_image": gt * (1 - box) + 0.5 * box, "mask": box},
            target=gt,
            region_mask=box,
            meta={},
        )
