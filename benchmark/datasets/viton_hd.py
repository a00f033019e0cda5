"""VITON-HD (``zalando-hd-resized``) as StableVITON reads it; see DESIGN.md for the layout."""

from __future__ import annotations

from pathlib import Path

from benchmark.api.sample import I2ISample
from benchmark.datasets.io import check_aspect, image_size, read_image, read_mask, require_dirs

PAIRINGS = ("paired", "unpaired")
FOLDERS = ("image", "cloth", "cloth-mask", "agnostic-v3.2", "agnostic-mask", "image-densepose")


class VitonHDDataset:
    """Person + garment samples.

    ``pairing="paired"``: each person with their own garment (target = the photo).
    ``pairing="unpaired"``: the garment named in ``<split>_pairs.txt`` (no target;
    FID/KID compare against the split's photos). The agnostic mask file holds
    255 on the region to inpaint; it becomes ``region_mask`` = 1 there (StableVITON
    inverts it for its own use; this loader does not).
    Conditions: ``masked_image`` (agnostic-v3.2), ``mask`` (agnostic mask), ``pose`` (densepose).
    ``meta["photo"]`` is the person photo in both pairings (the unpaired
    protocol's real-image set), ``meta["cloth"]`` the garment file used.
    """

    def __init__(self, root: str | Path, split: str = "test", pairing: str = "paired",
                 size: tuple[int, int] | None = (512, 384), reference_size: tuple[int, int] | None = None):
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.root, self.split, self.pairing = Path(root), split, pairing
        self.size, self.reference_size = size, reference_size or size
        pairs = self.root / f"{split}_pairs.txt"
        if not pairs.is_file():
            raise FileNotFoundError(f"VITON-HD pairs file not found: {pairs} (expected zalando-hd-resized/{split}_pairs.txt)")
        require_dirs("VITON-HD", *(self.root / split / f for f in FOLDERS))
        self.pairs: list[tuple[str, str]] = []
        for n, line in enumerate(pairs.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{pairs}:{n}: expected '<person>.jpg <cloth>.jpg', got {line!r}")
            person, cloth = parts
            self.pairs.append((person, person if pairing == "paired" else cloth))

    @property
    def ids(self) -> list[str]:
        return [Path(p).stem for p, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> I2ISample:
        person, cloth = self.pairs[i]
        sid, d = Path(person).stem, self.root / self.split
        photo = d / "image" / person
        size = self.size
        if size is not None:
            check_aspect(sid, photo, image_size(photo, sid), size)
        target = read_image(photo, sid, size)
        size = tuple(target.shape[-2:])
        ref_size = self.reference_size or size
        region = read_mask(d / "agnostic-mask" / f"{sid}_mask.png", sid, size)
        return I2ISample(
            sample_id=sid,
            reference=read_image(d / "cloth" / cloth, sid, ref_size),
            reference_mask=read_mask(d / "cloth-mask" / cloth, sid, ref_size),
            conditions={
                "masked_image": read_image(d / "agnostic-v3.2" / person, sid, size),
                "mask": region.clone(),
                "pose": read_image(d / "image-densepose" / person, sid, size),
            },
            target=target if self.pairing == "paired" else None,
            region_mask=region,
            meta={"person": person, "cloth": cloth, "pairing": self.pairing, "photo": target},
        )
