"""Small numpy drawing primitives shared by the procedural generators.

Images are float32 arrays (H, W, 3) in [0, 1]; masks are bool arrays (H, W).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.store import write_atomic

# 5x5 glyphs: small logos that a model can only reproduce by copying them.
GLYPHS = [
    np.array(rows, dtype=bool)
    for rows in (
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]],
        [[1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1]],
        [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]],
        [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]],
        [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]],
        [[0, 1, 1, 1, 0], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [0, 1, 1, 1, 0]],
    )
]


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinate arrays, each (h, w)."""
    return np.mgrid[0:h, 0:w].astype(np.float32)


def random_colour(rng: np.random.Generator, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    return rng.uniform(lo, hi, size=3).astype(np.float32)


def contrasting_colour(rng: np.random.Generator, other: np.ndarray, min_dist: float = 0.45) -> np.ndarray:
    """A random colour at least ``min_dist`` (L2 in RGB) away from ``other``."""
    for _ in range(64):
        c = random_colour(rng)
        if np.linalg.norm(c - other) >= min_dist:
            return c
    return (1.0 - other).astype(np.float32)


def pattern(rng: np.random.Generator, h: int, w: int, base: np.ndarray, kind: str | None = None) -> np.ndarray:
    """A (h, w, 3) texture: plain, stripes (either axis or diagonal), dots or checks."""
    kind = kind or rng.choice(["plain", "hstripes", "vstripes", "dstripes", "dots", "checks"])
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if kind == "plain":
        return img
    second = contrasting_colour(rng, base)
    period = int(rng.integers(3, 7))
    yy, xx = grid(h, w)
    phase = int(rng.integers(0, period))
    if kind == "hstripes":
        sel = ((yy + phase) % period) < period / 2
    elif kind == "vstripes":
        sel = ((xx + phase) % period) < period / 2
    elif kind == "dstripes":
        sel = ((xx + yy + phase) % period) < period / 2
    elif kind == "dots":
        sel = (((yy + phase) % period) < 2) & (((xx + phase) % period) < 2)
    elif kind == "checks":
        sel = (((yy + phase) // period + (xx + phase) // period) % 2) == 0
    else:
        raise ValueError(f"unknown pattern kind {kind!r}")
    img[sel] = second
    return img


def shape_mask(kind: str, h: int, w: int) -> np.ndarray:
    """A bool (h, w) silhouette of a named shape filling its box."""
    yy, xx = grid(h, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ny, nx = (yy - cy) / max(h / 2, 1), (xx - cx) / max(w / 2, 1)
    if kind == "ellipse":
        return ny**2 + nx**2 <= 1.0
    if kind == "box":
        return np.ones((h, w), dtype=bool)
    if kind == "diamond":
        return np.abs(ny) + np.abs(nx) <= 1.0
    if kind == "triangle":
        return (ny >= -1) & (np.abs(nx) <= (ny + 1) / 2)
    if kind == "cross":
        return (np.abs(ny) <= 0.38) | (np.abs(nx) <= 0.38)
    if kind == "ring":
        r = ny**2 + nx**2
        return (r <= 1.0) & (r >= 0.3)
    raise ValueError(f"unknown shape kind {kind!r}")


SHAPES = ("ellipse", "box", "diamond", "triangle", "cross", "ring")


def resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, ...) array to (h, w, ...); keeps stripes crisp."""
    src_h, src_w = img.shape[:2]
    rows = np.minimum((np.arange(h) + 0.5) * src_h / h, src_h - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * src_w / w, src_w - 1).astype(int)
    return img[rows][:, cols]


def clutter(rng: np.random.Generator, h: int, w: int, n: int = 6) -> np.ndarray:
    """A cluttered (h, w, 3) background: a texture with a few random rectangles."""
    img = pattern(rng, h, w, random_colour(rng, 0.2, 0.8))
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        y1, x1 = y0 + int(rng.integers(3, h // 3 + 4)), x0 + int(rng.integers(3, w // 3 + 4))
        img[y0:y1, x0:x1] = random_colour(rng, 0.2, 0.8)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_image(path: Path, img: np.ndarray) -> None:
    """Write a float (H, W, 3) or bool (H, W) image; JPEG gets quality 95 and no chroma subsampling."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.dtype == bool:
        pil = Image.fromarray((img * 255).astype(np.uint8), mode="L")
    else:
        pil = Image.fromarray(to_uint8(img), mode="RGB")
    kwargs = {"quality": 95, "subsampling": 0} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    buf = io.BytesIO()
    pil.save(buf, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG", **kwargs)
    write_atomic(path, buf.getvalue())
