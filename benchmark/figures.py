"""Figures: map overlays (eq. 9 thresholded) and the leaderboard plots."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image  # noqa: E402

from benchmark.maps import prepare_map  # noqa: E402

UPSCALE = 4  # the embedded images are tiny; enlarge for viewing


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def overlay(image: torch.Tensor, raw_map: torch.Tensor | None, threshold: float = 0.4, alpha: float = 0.55) -> np.ndarray:
    """Blend the thresholded, normalised map (jet) over ``image`` (3, H, W); zeros stay transparent."""
    base = to_uint8(image).astype(np.float32)
    if raw_map is None:
        return base.astype(np.uint8)
    m = prepare_map(raw_map, tuple(image.shape[-2:]), threshold).numpy()
    if np.isnan(m).any():
        return base.astype(np.uint8)
    colour = colormaps["jet"](m)[..., :3] * 255
    a = (m > 0)[..., None] * alpha
    return (base * (1 - a) + colour * a).astype(np.uint8)


def _enlarge(arr: np.ndarray, height: int) -> np.ndarray:
    h, w = arr.shape[:2]
    return np.asarray(Image.fromarray(arr).resize((max(1, round(w * height / h)), height), Image.NEAREST))


def strip(panels: list[np.ndarray], height: int | None = None, gap: int = 4) -> np.ndarray:
    """Concatenate RGB panels horizontally at a common height with white gaps."""
    height = height or max(p.shape[0] for p in panels) * UPSCALE
    parts = []
    for p in panels:
        parts += [_enlarge(p, height), np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], 1)


def save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def sample_overlay(generated: torch.Tensor, reference: torch.Tensor, g_map: torch.Tensor,
                   r_map: torch.Tensor | None, threshold: float = 0.4) -> np.ndarray:
    """[reference | ULAM_r over reference | generated | ULAM_g over generated]."""
    return strip([to_uint8(reference), overlay(reference, r_map, threshold), to_uint8(generated),
                  overlay(generated, g_map, threshold)])


def mark_position(image: torch.Tensor, fy: float, fx: float) -> np.ndarray:
    """The image (3, H, W) with a small red cross at fractional position (fy, fx)."""
    arr = to_uint8(image).copy()
    h, w = arr.shape[:2]
    y, x = min(int(fy * h), h - 1), min(int(fx * w), w - 1)
    arr[max(y - 2, 0) : y + 3, x] = (255, 0, 0)
    arr[y, max(x - 2, 0) : x + 3] = (255, 0, 0)
    return arr


def plot_scatter(frame, path: Path, quality: list[str]) -> bool:
    """Per-sample IMACS_g / IMACS_r against the task's quality metric, one colour per model."""
    import matplotlib.pyplot as plt

    if not quality:
        return False
    q = quality[0]
    sides = [s for s in ("imacs_g", "imacs_r") if frame.loc[frame.metric == s, "value"].notna().any()]
    if not sides:
        return False
    fig, axes = plt.subplots(1, len(sides), figsize=(4.5 * len(sides), 3.6), squeeze=False)
    for ax, side in zip(axes[0], sides):
        for model, g in frame.groupby("model"):
            wide = g[g.metric.isin([side, q])].pivot_table(index="sample_id", columns="metric", values="value")
            if side in wide and q in wide:
                ax.scatter(wide[side], wide[q], s=12, alpha=0.7, label=model)
        ax.set_xlabel(side.replace("imacs_", "IMACS_"))
        ax.set_ylabel(q)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
