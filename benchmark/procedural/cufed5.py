"""Procedural reference-based super-resolution data in the CUFED5 layout.

HR images are crops of a larger textured canvas; each HR image gets five
references, crops of the same canvas that overlap it less and less (level 1
most similar, level 5 least, with a growing scale change). Masks say where the
reference content lies in the HR image and in the reference, which CUFED5
lacks and IMACS needs; they are written beside the standard folder.

Layout written::

    <root>/{train,test}/CUFED5/{id}_0.png            HR image
    <root>/{train,test}/CUFED5/{id}_{k}.png          reference at level k = 1..5
    <root>/{train,test}/CUFED5_masks/{id}_{k}_hr.png  HR pixels the reference shows
    <root>/{train,test}/CUFED5_masks/{id}_{k}_ref.png reference pixels showing HR content

``{id}`` has CUFED5's three digits, or as many as the largest id needs
(the same width for every file, so names sort in id order).

The LR input is not stored: loaders crop HR to a multiple of 4 and downsample
x1/4 with PIL bicubic, as the CUFED5 protocol does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.procedural import drawing as d

LEVELS = 5


def canvas(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) canvas tiled with textured patches and a few glyphs."""
    img = np.zeros((size, size, 3), dtype=np.float32)
    cell = size // 4
    for y in range(0, size, cell):
        for x in range(0, size, cell):
            img[y : y + cell, x : x + cell] = d.pattern(rng, cell, cell, d.random_colour(rng))
    for _ in range(6):
        glyph = np.kron(d.GLYPHS[int(rng.integers(len(d.GLYPHS)))], np.ones((2, 2), dtype=bool))
        gy, gx = (int(v) for v in rng.integers(0, size - 10, size=2))
        img[gy : gy + 10, gx : gx + 10][glyph] = d.random_colour(rng)
    return img


def _write_sample(out: Path, masks: Path, sid: int, rng: np.random.Generator, size: int, digits: int = 3,
                  texture_scale: int = 1) -> None:
    big = canvas(rng, size * 2 // texture_scale)
    if texture_scale > 1:  # coarser detail: the canvas drawn small, then each pixel repeated
        big = np.kron(big, np.ones((texture_scale, texture_scale, 1), dtype=big.dtype))
    oy, ox = (int(v) for v in rng.integers(0, size, size=2))
    hr = big[oy : oy + size, ox : ox + size]
    stem = f"{sid:0{digits}d}"
    d.save_image(out / f"{stem}_0.png", hr)
    for level in range(1, LEVELS + 1):
        # Higher levels: larger shift (less overlap) and a larger scale change.
        shift = int(size * (0.1 + 0.12 * (level - 1)))
        scale = 1.0 + 0.1 * (level - 1) * rng.choice([-1, 1]) * rng.uniform(0.5, 1.0)
        span = int(round(size / scale))
        dy, dx = (int(v) * shift for v in rng.choice([-1, 1], size=2))
        ry, rx = np.clip(oy + dy, 0, 2 * size - span), np.clip(ox + dx, 0, 2 * size - span)
        ref = d.resize_nearest(big[ry : ry + span, rx : rx + span], size, size)
        # Overlap of [oy, oy+size) x [ox, ox+size) with [ry, ry+span) x [rx, rx+span) in canvas pixels.
        y0, y1 = max(oy, ry), min(oy + size, ry + span)
        x0, x1 = max(ox, rx), min(ox + size, rx + span)
        hr_mask = np.zeros((size, size), dtype=bool)
        ref_mask = np.zeros((size, size), dtype=bool)
        if y1 > y0 and x1 > x0:
            hr_mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox] = True
            k = size / span
            ref_mask[int(round((y0 - ry) * k)) : int(round((y1 - ry) * k)),
                     int(round((x0 - rx) * k)) : int(round((x1 - rx) * k))] = True
        d.save_image(out / f"{stem}_{level}.png", ref)
        d.save_image(masks / f"{stem}_{level}_hr.png", hr_mask)
        d.save_image(masks / f"{stem}_{level}_ref.png", ref_mask)


def generate_cufed5(root: str | Path, n_train: int = 2000, n_test: int = 128, seed: int = 0,
                    size: int = 48, texture_scale: int = 1) -> Path:
    """Write a procedural CUFED5 tree under ``root``; returns ``root``. ``size`` must divide by 4.

    ``texture_scale`` s > 1 draws the canvas at 1/s resolution and repeats each pixel s x s times: stripe
    periods, dots and glyphs grow s-fold, so the detail the x1/4 LR input loses is coarse enough for a
    small latent model to hold (at scale 1, stripes of 3-6 px, an f=4 VAE reconstructs worse than bicubic).
    """
    if size % 4:
        raise ValueError(f"HR size must be a multiple of 4 for x4 super-resolution, got {size}")
    if texture_scale < 1 or (2 * size) % texture_scale:
        raise ValueError(f"texture_scale must be a positive divisor of 2 * size = {2 * size}, got {texture_scale}")
    root = Path(root)
    ids = {"train": range(n_train), "test": range(n_train, n_train + n_test)}
    digits = max(3, len(str(n_train + n_test - 1)))  # CUFED5's 3 digits; wider only when needed, same width for all
    for (split, split_ids), split_ss in zip(ids.items(), np.random.SeedSequence(seed).spawn(2)):
        for sid, child in zip(split_ids, split_ss.spawn(len(split_ids))):
            _write_sample(root / split / "CUFED5", root / split / "CUFED5_masks", sid,
                          np.random.default_rng(child), size, digits, texture_scale)
    return root
