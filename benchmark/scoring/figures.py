"""Figures: map overlays (eq. 9 thresholded) and the leaderboard plots."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image  # noqa: E402

from benchmark.defaults import IMACS_SCORES  # noqa: E402
from benchmark.scoring.maps import prepare_map  # noqa: E402
from benchmark.registry import SAMPLE_METRICS, SET_METRICS, metric_direction, metric_label  # noqa: E402
from benchmark.store import write_atomic  # noqa: E402

UPSCALE = 4  # the embedded images are tiny; enlarge for viewing
GAP = 4  # white pixels between the panels of a strip
ALPHA = 0.55


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def overlay(image: torch.Tensor, raw_map: torch.Tensor | None, threshold: float = 0.4) -> np.ndarray:
    """Blend the thresholded, normalised map (jet) over ``image`` (3, H, W); zeros stay transparent."""
    base = to_uint8(image)
    m = None if raw_map is None else prepare_map(raw_map, tuple(image.shape[-2:]), threshold).numpy()
    if m is None or np.isnan(m).any():
        return base
    colour = colormaps["jet"](m)[..., :3] * 255
    a = (m > 0)[..., None] * ALPHA
    return (base.astype(np.float32) * (1 - a) + colour * a).astype(np.uint8)


def strip(panels: list[np.ndarray]) -> np.ndarray:
    """Concatenate RGB panels horizontally at a common height (:data:`UPSCALE` x the tallest) with white gaps."""
    height = max(p.shape[0] for p in panels) * UPSCALE
    parts = []
    for p in panels:
        width = max(1, round(p.shape[1] * height / p.shape[0]))
        parts += [np.asarray(Image.fromarray(p).resize((width, height), Image.NEAREST)),
                  np.full((height, GAP, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], 1)


def save_png(arr: np.ndarray, path: Path) -> None:
    """(H, W, 3) uint8 as a PNG at ``path``, atomically."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    write_atomic(path, buf.getvalue())


def png_bytes(fig, dpi: int) -> bytes:
    """A matplotlib Figure as PNG bytes without a software stamp (the same figure gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def sample_overlay(generated: torch.Tensor, reference: torch.Tensor, g_map: torch.Tensor,
                   r_map: torch.Tensor | None, threshold: float = 0.4) -> np.ndarray:
    """[reference | ULAM_r over reference | generated | ULAM_g over generated]."""
    return strip([to_uint8(reference), overlay(reference, r_map, threshold), to_uint8(generated),
                  overlay(generated, g_map, threshold)])


def plot_scatter(frame, path: Path, quality: list[str]) -> bool:
    """Per-sample IMACS_g / IMACS_r against the task's first quality metric, one colour per model.

    ``frame``: tidy per-sample rows (model, sample_id, metric, value). Writes a PNG at ``path`` and
    returns True; False (nothing written) when there is no quality metric or no IMACS value.
    """
    fig = scatter_figure(frame, quality)
    if fig is not None:
        write_atomic(path, png_bytes(fig, 110))
    return fig is not None


def scatter_figure(frame, quality: list[str]):
    """The :func:`plot_scatter` figure (a bare matplotlib Figure), or None when there is nothing to plot."""
    from matplotlib.figure import Figure

    if not quality:
        return None
    q = quality[0]
    sides = [s for s in IMACS_SCORES if frame.loc[frame.metric == s, "value"].notna().any()]
    if not sides:
        return None
    fig = Figure(figsize=(4.2 * len(sides) + 1.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    # One colour per model across panels, also when a model has no value on one side (single-token models).
    colour = {m: f"C{i % 10}" for i, m in enumerate(sorted(frame["model"].unique()))}
    for ax, side in zip(axes, sides):
        for model, g in frame.groupby("model"):
            wide = g[g.metric.isin([side, q])].pivot_table(index="sample_id", columns="metric", values="value")
            if side in wide and q in wide:
                ax.scatter(wide[side], wide[q], s=12, alpha=0.7, color=colour[model], label=model)
        ax.set_xlabel(_axis_label(side))
        ax.set_ylabel(_axis_label(q))
        ax.set_title(f"{metric_label(side)} against {metric_label(q)}", fontsize=9)
        ax.grid(alpha=0.3)
    found = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    labels = [m for m in colour if m in found]
    if labels:  # outside the axes: a legend over the points hides the ones it is about
        fig.legend([found[m] for m in labels], labels, loc="outside right upper", title="model", fontsize=7,
                   title_fontsize=8)
    fig.suptitle("Per-sample attribution score against output quality (one point per sample)", fontsize=10)
    return fig


def _axis_label(name: str) -> str:
    """``<label> (<unit or "no unit">[, range]; higher/lower is better)`` from the metric registry."""
    info = next((reg.info(name) for reg in (SET_METRICS, SAMPLE_METRICS) if name in reg), {})
    extra = ", range [-λ, 1]" if name.startswith("imacs") else ""
    direction = metric_direction(name)
    better = f"; {direction} is better" if direction else ""
    return f"{metric_label(name)} ({info.get('unit') or 'no unit'}{extra}{better})"
