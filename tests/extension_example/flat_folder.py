"""A dataset format: ``<root>/<id>.png`` images, inpainted in a centred box from a crop of themselves.

Conditions ``masked_image`` (the image with the box cleared) and ``mask`` (the box), the names a model built
for inpainting declares in its ``i2i_config.json``; ``target`` is the image, ``region_mask`` the box, the
reference the box's content with ``reference_mask`` all ones but a border.
"""

from pathlib import Path

import torch

from benchmark.api.sample import DatasetError, I2ISample
from benchmark.datasets.io import as_size, read_image

FORMAT = "flat folder (format flat_folder)"


class FlatFolderDataset:
    @classmethod
    def from_config(cls, root: Path, ds) -> "FlatFolderDataset":
        """From a task's ``dataset`` section (``size``: the evaluation size, default native)."""
        return cls(root, as_size(ds.size))

    def __init__(self, root: Path, size: tuple[int, int] | None = None):
        self.root, self.size = Path(root), size
        self._ids = sorted(p.stem for p in self.root.glob("*.png"))
        if not self._ids:
            raise DatasetError(FORMAT, str(self.root), "no samples", f"{self.root}/*.png")

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def files(self, i: int) -> dict[str, Path]:
        return {"image": self.root / f"{self._ids[i]}.png"}

    def __getitem__(self, i: int) -> I2ISample:
        sid = self._ids[i]
        image = read_image(self.files(i)["image"], sid, self.size)
        h, w = image.shape[-2:]
        box = torch.zeros(1, h, w)
        box[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
        reference = image[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].clone()
        ref_mask = torch.zeros(1, *reference.shape[-2:])
        ref_mask[:, 2:-2, 2:-2] = 1
        return I2ISample(sample_id=sid, reference=reference, target=image, region_mask=box, reference_mask=ref_mask,
                         conditions={"masked_image": image * (1 - box), "mask": box})
