"""Procedural exemplar-based object inpainting data in the COCOEE layout.

A textured scene has a box to fill; the ground truth shows an object (shape,
colour, texture) filling that box; the reference shows the same object on its
own cluttered background, at another position and scale. COCOEE lacks the
reference object's mask that IMACS_r needs, so it is written beside the
standard folders as ``Ref_mask_3500``.

Layout written (Paint-by-Example's ``test_bench``)::

    <root>/{train,test}/test_bench/GT_3500/{id:012d}_GT.png
    <root>/{train,test}/test_bench/Ref_3500/{id:012d}_ref.png
    <root>/{train,test}/test_bench/Mask_bbox_3500/{id:012d}_mask.png   255 = region to fill
    <root>/{train,test}/test_bench/Ref_mask_3500/{id:012d}_ref_mask.png 255 = object
    <root>/{train,test}/test_bench/id_list.npy
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.procedural import drawing as d


def exemplar(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An object texture (h, w, 3) and its silhouette (h, w)."""
    kind = d.SHAPES[int(rng.integers(len(d.SHAPES)))]
    sil = d.shape_mask(kind, h, w)
    tex = d.pattern(rng, h, w, d.random_colour(rng))
    return tex, sil


def _write_sample(bench: Path, sid: int, rng: np.random.Generator, size: int) -> None:
    scene = d.clutter(rng, size, size, n=4)
    bh, bw = (int(v) for v in rng.integers(size * 0.35, size * 0.6, size=2))
    by, bx = int(rng.integers(0, size - bh)), int(rng.integers(0, size - bw))
    obj, sil = exemplar(rng, 32, 32)
    gt = scene.copy()
    placed = d.resize_nearest(obj, bh, bw)
    placed_sil = d.resize_nearest(sil, bh, bw)
    gt[by : by + bh, bx : bx + bw][placed_sil] = placed[placed_sil]
    box = np.zeros((size, size), dtype=bool)
    box[by : by + bh, bx : bx + bw] = True
    ref = d.clutter(rng, size, size, n=8)
    rs = int(rng.integers(size * 0.45, size * 0.75))
    ry, rx = int(rng.integers(0, size - rs)), int(rng.integers(0, size - rs))
    ref_obj, ref_sil = d.resize_nearest(obj, rs, rs), d.resize_nearest(sil, rs, rs)
    ref[ry : ry + rs, rx : rx + rs][ref_sil] = ref_obj[ref_sil]
    ref_mask = np.zeros((size, size), dtype=bool)
    ref_mask[ry : ry + rs, rx : rx + rs] = ref_sil
    stem = f"{sid:012d}"
    d.save_image(bench / "GT_3500" / f"{stem}_GT.png", gt)
    d.save_image(bench / "Ref_3500" / f"{stem}_ref.png", ref)
    d.save_image(bench / "Mask_bbox_3500" / f"{stem}_mask.png", box)
    d.save_image(bench / "Ref_mask_3500" / f"{stem}_ref_mask.png", ref_mask)


def generate_cocoee(root: str | Path, n_train: int = 2000, n_test: int = 128, seed: int = 0,
                    size: int = 48) -> Path:
    """Write a procedural COCOEE tree under ``root`` (train and test benches); returns ``root``."""
    root = Path(root)
    ids = {"train": np.arange(n_train), "test": np.arange(n_train, n_train + n_test)}
    for (split, split_ids), split_ss in zip(ids.items(), np.random.SeedSequence(seed).spawn(2)):
        bench = root / split / "test_bench"
        bench.mkdir(parents=True, exist_ok=True)  # an empty split still gets its id_list.npy
        for sid, child in zip(split_ids, split_ss.spawn(len(split_ids))):
            _write_sample(bench, int(sid), np.random.default_rng(child), size)
        np.save(bench / "id_list.npy", split_ids)
    return root
