"""VITON-HD (``zalando-hd-resized``) as StableVITON reads it; see docs/datasets.md for the layout."""

from __future__ import annotations

from pathlib import Path

from benchmark.api.sample import DatasetError, I2ISample
from benchmark.datasets.io import as_size as _tuple
from benchmark.datasets.io import (check_aspect, check_size, image_size, read_image, read_mask, require_dirs,
                                   require_root)

FORMAT = "VITON-HD (format viton_hd)"
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

    Sizes are checked on the files, before any resize, against the person
    photo: agnostic image, agnostic mask and densepose must have its size; the
    garment its aspect ratio, and the garment mask the garment's size; with
    ``size`` given, the photo must have its aspect ratio. A mismatch, an empty
    mask, or a full agnostic mask (nothing outside to keep) is a
    :class:`SampleError` naming the sample and the file. A missing root, pairs
    file or folder, or a split with no usable pair, is a :class:`DatasetError`.
    """

    @classmethod
    def from_config(cls, root: Path, ds) -> "VitonHDDataset":
        """From a task's ``dataset`` section (:class:`benchmark.config.DatasetConfig`); ``root`` resolved."""
        return cls(root, ds.split, ds.pairing, size=_tuple(ds.size), reference_size=_tuple(ds.reference_size))

    def __init__(self, root: str | Path, split: str = "test", pairing: str = "paired",
                 size: tuple[int, int] | None = (512, 384), reference_size: tuple[int, int] | None = None):
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.root, self.split, self.pairing = Path(root), split, pairing
        self.size, self.reference_size = size, reference_size or size
        pairs = self.root / f"{split}_pairs.txt"
        layout = f"{pairs} and {self.root / split}/{{{', '.join(FOLDERS)}}}/ (a zalando-hd-resized folder)"
        require_root(FORMAT, self.root, layout)
        if not pairs.is_file():
            raise DatasetError(FORMAT, str(self.root), f"pairs file not found: {pairs}", layout)
        require_dirs(FORMAT, self.root, *(self.root / split / f for f in FOLDERS))
        self.pairs: list[tuple[str, str]] = []
        for n, line in enumerate(pairs.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{pairs}:{n}: expected '<person>.jpg <cloth>.jpg', got {line!r}")
            person, cloth = parts
            self.pairs.append((person, person if pairing == "paired" else cloth))
        photos = self.root / split / "image"
        if not self.pairs:
            raise DatasetError(FORMAT, str(self.root), f"{pairs} lists no pairs",
                               f"lines '<person>.jpg <cloth>.jpg' in {pairs}")
        if not any((photos / person).is_file() for person, _ in self.pairs):
            raise DatasetError(FORMAT, str(self.root), f"none of the {len(self.pairs)} persons in {pairs.name} "
                                                       f"has a photo", f"{photos}/{self.pairs[0][0]} and the others")

    @property
    def ids(self) -> list[str]:
        return [Path(p).stem for p, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def files(self, i: int) -> dict[str, Path]:
        """The files of sample ``i``, by folder name (``cloth`` and ``cloth-mask``: the garment used)."""
        person, cloth = self.pairs[i]
        d, sid = self.root / self.split, Path(person).stem
        return {"image": d / "image" / person, "cloth": d / "cloth" / cloth, "cloth-mask": d / "cloth-mask" / cloth,
                "agnostic-v3.2": d / "agnostic-v3.2" / person, "agnostic-mask": d / "agnostic-mask" / f"{sid}_mask.png",
                "image-densepose": d / "image-densepose" / person}

    def check_sizes(self, i: int) -> None:
        """The size checks of sample ``i`` (class docstring), from the image headers only."""
        sid, f = Path(self.pairs[i][0]).stem, self.files(i)
        photo = image_size(f["image"], sid)
        if self.size is not None:
            check_aspect(sid, f["image"], photo, self.size, of="the requested size")
        person, garment = f"the person image {f['image'].name}", f"the cloth image {f['cloth'].name}"
        for name in ("agnostic-v3.2", "agnostic-mask", "image-densepose"):
            check_size(sid, f[name], image_size(f[name], sid), photo, person)
        cloth = image_size(f["cloth"], sid)
        check_aspect(sid, f["cloth"], cloth, photo, of=person)
        check_size(sid, f["cloth-mask"], image_size(f["cloth-mask"], sid), cloth, garment)

    def __getitem__(self, i: int) -> I2ISample:
        person, cloth = self.pairs[i]
        sid, f = Path(person).stem, self.files(i)
        self.check_sizes(i)
        target = read_image(f["image"], sid, self.size)
        size = tuple(target.shape[-2:])
        ref_size = self.reference_size or size
        region = read_mask(f["agnostic-mask"], sid, size)
        return I2ISample(
            sample_id=sid,
            reference=read_image(f["cloth"], sid, ref_size),
            # a garment filling its whole picture is odd but scorable: IMACS_r says "full mask" for that sample
            reference_mask=read_mask(f["cloth-mask"], sid, ref_size, allow_full=True),
            conditions={
                "masked_image": read_image(f["agnostic-v3.2"], sid, size),
                "mask": region.clone(),
                "pose": read_image(f["image-densepose"], sid, size),
            },
            target=target if self.pairing == "paired" else None,
            region_mask=region,
            meta={"person": person, "cloth": cloth, "pairing": self.pairing, "photo": target},
        )
