"""Attribution-map figures a reader can read: titled panels over the images, mask outlines, one colour bar.

Inputs are stored sample folders (``generated.png`` (H, W) RGB, ``reference.png`` (Hr, Wr) RGB,
``maps.npz``; keys in :mod:`benchmark.results.sample_maps`). Every map is drawn as eq. (9) prepares it
(:func:`benchmark.scoring.maps.prepare_map`: min-max normalised, bicubic-resized to the image it is drawn over,
zero at or below the threshold): colour where the map is above the threshold, the bare image elsewhere.
Generated-side maps live on the latent grid (h, w) and are drawn over the generated image; reference-side
maps live on the token grid (h_I, w_I) and are upsampled the same way over the reference image.

Figures are built on a bare :class:`~matplotlib.figure.Figure` (no pyplot state, so callers in threads or
workers do not share figures) and saved without a software stamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmark.defaults import DEFAULT_THRESHOLD, MAP_LEVEL_LABELS, MAP_LEVEL_UNITS, MAP_LEVELS  # noqa: E402
from benchmark.scoring.figures import png_bytes  # noqa: E402
from benchmark.scoring.maps import prepare_map  # noqa: E402
from benchmark.results.sample_maps import SampleMaps  # noqa: E402
from benchmark.scoring.terms import side_map  # noqa: E402
from benchmark.store import write_atomic  # noqa: E402

CMAP = "jet"
ALPHA = 0.6  # map over image: the image stays visible under the colour
MASK_COLOUR = "#ff00ff"  # magenta: absent from jet, so an outline never reads as attribution
MAX_PANELS = 8  # per row; more heads or layers are cut with "first 8 of N" in the title
METHOD_COLUMNS = 6
PANEL_IN = 1.5  # inches per panel
MIN_WIDTH_IN = 4.5  # room for the suptitle over one panel
DPI = 100
MIN_DPI = 60
MAX_BYTES = 150_000  # leaderboards keep many figures in git
LEVELS = {k: MAP_LEVEL_LABELS[k] for k in MAP_LEVELS if k != "sram"}  # one figure each (SRAM: sram_figure)
_OUTLINES = {1: "magenta outline: inpainting region",
             2: "magenta outline: inpainting region (top), reference mask (bottom)"}
# Dotted module-path parts of the usual UNet / DiT layouts, shortened for panel titles.
_ABBREV = {"down_blocks": "down", "up_blocks": "up", "mid_block": "mid", "input_blocks": "in",
           "output_blocks": "out", "middle_block": "mid", "attentions": "a", "transformer_blocks": "tb",
           "single_transformer_blocks": "stb"}


# --- public figures -------------------------------------------------------------------------------
def level_figure(sample_dir: Path, level: str, threshold: float, out_path: Path, title: str) -> Path | None:
    """One sample's maps at ``level`` (ulam / tlam / hlam / llam) as a PNG at ``out_path``.

    Top row: generated-side maps ``g/<level>`` over ``generated.png`` with the outline of ``mask/region``;
    bottom row (when the model has a reference side): the eq.-17 maps ``rm/<level>`` (else ``r/<level>``)
    upsampled over ``reference.png`` with the outline of ``mask/reference``. At most :data:`MAX_PANELS`
    panels a row. ``threshold`` in [0, 1): map values at or below it are not drawn.
    Returns ``out_path``, or None when the sample stores no ``g/<level>``.
    """
    return _save(_level_figure(Path(sample_dir), level, threshold, title), out_path)


def sram_figure(sample_dir: Path, out_path: Path, title: str,
                positions: Sequence[tuple[int, int]] | None = None,
                threshold: float = DEFAULT_THRESHOLD) -> Path | None:
    """Specific-reference maps (eq. 16) of three generated positions as a PNG at ``out_path``.

    ``positions``: (row, col) cells of the latent grid (h, w); by default :func:`sram_positions` (the
    region's centre, its edge, outside it). Top row: each position marked on ``generated.png``; bottom
    row: its row of ``sr/volume`` (h*w, h_I*w_I), reshaped to (h_I, w_I) and upsampled over
    ``reference.png``. Returns ``out_path``, or None when the sample stores no ``sr/volume``.
    """
    return _save(_sram_figure(Path(sample_dir), title, positions, threshold), out_path)


def methods_figure(generated_png, maps: Mapping[str, torch.Tensor | np.ndarray | None], mask,
                   threshold: float, out_path: Path, title: str) -> Path:
    """One generated-side map per attribution method over the generated image, as a PNG at ``out_path``.

    ``generated_png``: the path of the generated PNG; ``maps``: method label -> raw map (h, w) (any grid;
    resized to (H, W)), or None where a method has no map to draw (the uniform map); ``mask``: the region
    mask (H, W), or None. Panels are titled with the labels, in the order given.
    """
    return _save(_methods_figure(generated_png, maps, mask, threshold, title), out_path)


def sram_positions(region: torch.Tensor | np.ndarray | None,
                   latent_grid: tuple[int, int]) -> list[tuple[str, tuple[int, int]]]:
    """Three labelled (row, col) cells of the latent grid (h, w) to show specific-reference maps for.

    ``region``: the inpainting mask (H, W) in {0, 1}. On the grid a cell is inside when more than half
    of its area is. Inside: the inside cell nearest the region's centroid (a concave region's centroid
    may lie outside it); edge: the topmost inside cell with a 4-neighbour outside (the image border
    does not count), nearest the centroid's column; outside: the outside cell farthest from the region.
    Without a region, or one that is empty or full on the grid: three fixed cells on the diagonal.
    """
    h, w = latent_grid
    fixed = [(f"position {i + 1}", (round(f * (h - 1)), round(f * (w - 1)))) for i, f in enumerate((0.25, 0.5, 0.75))]
    if region is None:
        return fixed
    region = torch.as_tensor(region, dtype=torch.float32)
    inside = F.interpolate(region[None, None], size=(h, w), mode="area")[0, 0].numpy() > 0.5
    if not inside.any() or inside.all():
        return fixed
    ys, xs = np.nonzero(inside)
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    padded = np.pad(inside, 1, mode="edge")
    all_neighbours_inside = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    ey, ex = np.nonzero(inside & ~all_neighbours_inside)
    j = min(range(len(ey)), key=lambda k: (ey[k], abs(ex[k] - cx), ex[k]))
    distance = ndimage.distance_transform_edt(~inside)  # to the nearest inside cell
    far = np.unravel_index(int(np.argmax(distance)), distance.shape)  # first in raster order on ties
    return [("inside (centre)", (int(ys[i]), int(xs[i]))), ("region edge", (int(ey[j]), int(ex[j]))),
            ("outside (farthest)", (int(far[0]), int(far[1])))]


def time_group_steps(num_steps: int, num_groups: int) -> list[tuple[int, int]]:
    """(first, last) sampling step, 1-based and inclusive, of each time group of eq. (10), as the
    accumulator assigns them (0-based step s to group s * G // T)."""
    spans: dict[int, list[int]] = {}
    for s in range(num_steps):
        spans.setdefault(s * num_groups // num_steps, [s + 1, s + 1])[1] = s + 1
    return [tuple(spans[g]) for g in range(num_groups)]


def short_layer_name(name: str, others: Sequence[str] = ()) -> str:
    """A layer's module path shortened for a panel title.

    ``down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor`` -> ``down1.a0`` when ``others``
    (all layer names) end in ``transformer_blocks.0.attn2``: an ending every layer has tells none apart.
    """
    def parts(n: str) -> list[str]:
        return [p for p in n.split(".") if p != "processor"]

    own = parts(name)
    if len(others) > 1:
        split = [parts(o) for o in others]
        common = 0
        while common < min(map(len, split)) - 1 and len({tuple(p[len(p) - common - 1:]) for p in split}) == 1:
            common += 1
        own = own[: len(own) - common] if common < len(own) else own
    out: list[str] = []
    for p in own:
        if p.isdigit() and out and not out[-1][-1].isdigit():
            out[-1] += p
        else:
            out.append(_ABBREV.get(p, p))
    return ".".join(out)


# --- figure builders (return the Figure, for callers and tests that look inside) ------------------
def _level_figure(sample_dir: Path, level: str, threshold: float, title: str) -> Figure | None:
    if level not in LEVELS:
        raise ValueError(f"unknown map level {level!r}; one of {sorted(LEVELS)}")
    maps = _load_maps(sample_dir)
    g = maps.get(f"g/{level}")
    if g is None:
        return None
    single = maps.meta.get("reference_side", True) is False
    r = None if single else side_map(maps, "r", level)
    eq17 = f"rm/{level}" in maps.arrays
    g, r = (g[None], None if r is None else r[None]) if level == "ulam" else (g, r)
    total = g.shape[0]
    shown = min(total, MAX_PANELS)
    titles = _panel_titles(level, maps.meta, total)[:shown]
    generated = _read_rgb(sample_dir / "generated.png")
    rows = [("generated side\n(M_g)", generated, g, maps.get("mask/region"))]
    if r is not None:
        label = "reference side\n(M_r, eq. 17)" if eq17 else "reference side\n(M_r)"
        rows.append((label, _read_rgb(sample_dir / "reference.png"), r, maps.get("mask/reference")))

    fig, axes = _grid(len(rows), shown)
    for row, (label, image, stack, mask) in zip(axes, rows):
        for k, ax in enumerate(row):  # a side may have fewer panels than the other
            if k < stack.shape[0]:
                _draw_panel(ax, image, stack[k], threshold, mask, titles[k])
            else:
                ax.set_visible(False)
        row[0].set_ylabel(label, fontsize=8)
    what = LEVELS[level] if level == "ulam" else f"{LEVELS[level]}, {_count(level, shown, total)}"
    notes = [_OUTLINES[len(rows)]]
    if single:
        notes.append("reference side: not applicable (single reference token)")
    elif r is None:
        notes.append("reference side: not stored")
    _finish(fig, axes, title, [what] + notes, threshold)
    return fig


def _sram_figure(sample_dir: Path, title: str, positions, threshold: float) -> Figure | None:
    maps = _load_maps(sample_dir)
    volume = maps.get("sr/volume")
    if volume is None:
        return None
    h, w = maps.meta["latent_grid"]
    hi, wi = maps.meta["token_grid"]
    if tuple(volume.shape) != (h * w, hi * wi):
        raise ValueError(f"{sample_dir / 'maps.npz'}: sr/volume has shape {tuple(volume.shape)}, expected "
                         f"({h * w}, {hi * wi}) from latent_grid {h}x{w} and token_grid {hi}x{wi}")
    region = maps.get("mask/region")
    if positions is None:
        named = sram_positions(region, (h, w))
    else:
        named = [(f"position {k + 1}", (int(a), int(b))) for k, (a, b) in enumerate(positions)]
        bad = [p for _, p in named if not (0 <= p[0] < h and 0 <= p[1] < w)]
        if bad:
            raise ValueError(f"{sample_dir}: positions {bad} lie outside the latent grid {h}x{w}")
    generated = _read_rgb(sample_dir / "generated.png")
    reference = _read_rgb(sample_dir / "reference.png")
    ref_mask = maps.get("mask/reference")

    fig, axes = _grid(2, len(named))
    for k, (label, (a, b)) in enumerate(named):
        _draw_panel(axes[0][k], generated, None, threshold, region, f"{label}\n(row {a}, col {b})", note=False)
        _mark_cell(axes[0][k], generated.shape[:2], (h, w), (a, b))
        _draw_panel(axes[1][k], reference, volume[a * w + b].view(hi, wi), threshold, ref_mask, f"M_sr({a}, {b})")
    axes[0][0].set_ylabel("generated\nposition", fontsize=8)
    axes[1][0].set_ylabel("its reference\nmap (M_sr)", fontsize=8)
    _finish(fig, axes, title, [f"SRAM: reference attribution of single generated positions (latent grid {h}x{w})",
                               _OUTLINES[2]], threshold)
    return fig


def _methods_figure(generated_png, maps: Mapping, mask, threshold: float, title: str) -> Figure:
    if not maps:
        raise ValueError("methods_figure needs at least one method map")
    image = _read_rgb(Path(generated_png))
    cols = min(len(maps), METHOD_COLUMNS)
    fig, axes = _grid(-(-len(maps) // cols), cols, title_lines=2)
    flat = [ax for row in axes for ax in row]
    for ax, (label, raw) in zip(flat, maps.items()):
        raw = None if raw is None else torch.as_tensor(np.asarray(raw), dtype=torch.float32)
        _draw_panel(ax, image, raw, threshold, mask, textwrap.fill(label, 24))
    for ax in flat[len(maps):]:
        ax.set_visible(False)
    _finish(fig, axes, title, ["generated-side maps of each attribution method", _OUTLINES[1]], threshold)
    return fig


# --- drawing --------------------------------------------------------------------------------------
def _grid(rows: int, cols: int, title_lines: int = 1) -> tuple[Figure, list[list]]:
    """A rows x cols grid of panels, room for a suptitle and a colour bar on the right."""
    width = max(cols * PANEL_IN + 1.6, MIN_WIDTH_IN)
    height = rows * (PANEL_IN + 0.15 * (title_lines + 1)) + 0.6
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [list(r) for r in axes]


def _draw_panel(ax, image: np.ndarray, raw: torch.Tensor | None, threshold: float, mask: torch.Tensor | None,
                title: str, note: bool = True) -> None:
    """``image`` (H, W, 3) uint8; the prepared map of ``raw`` over it (transparent at 0); the mask outline."""
    size = image.shape[:2]
    ax.imshow(image)
    if raw is not None:
        m = prepare_map(raw, size, threshold).numpy()
        if np.isnan(m).any():  # a constant map carries no attribution; drawing it as 0 would hide that
            _panel_note(ax, "constant map:\nno attribution")
        else:
            ax.imshow(np.ma.masked_less_equal(m, 0), cmap=CMAP, norm=Normalize(0, 1), alpha=ALPHA)
    elif note:
        _panel_note(ax, "no map")
    _outline(ax, mask, size)
    ax.set_xlim(-0.5, size[1] - 0.5)
    ax.set_ylim(size[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def _outline(ax, mask: torch.Tensor | None, size: tuple[int, int]) -> None:
    """Contour of a {0, 1} mask (any size; scaled onto an image of ``size``) at the 0.5 level."""
    if mask is None:
        return
    m = np.asarray(mask, dtype=np.float32)
    if m.min() == m.max():  # empty or full: no border to draw
        return
    (hm, wm), (h, w) = m.shape, size
    xs = (np.arange(wm) + 0.5) * w / wm - 0.5  # mask cell centres in image pixel coordinates
    ys = (np.arange(hm) + 0.5) * h / hm - 0.5
    ax.contour(xs, ys, m, levels=[0.5], colors=[MASK_COLOUR], linewidths=1.5)


def _mark_cell(ax, size: tuple[int, int], grid: tuple[int, int], cell: tuple[int, int]) -> None:
    """Outline the latent cell (row, col) on an image of ``size`` (white with a black halo)."""
    (h, w), (gh, gw), (a, b) = size, grid, cell
    ch, cw = h / gh, w / gw
    ax.add_patch(Rectangle((b * cw - 0.5, a * ch - 0.5), cw, ch, fill=False, edgecolor="white", linewidth=1.5,
                           path_effects=[patheffects.withStroke(linewidth=3, foreground="black")]))


def _panel_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})


def _finish(fig: Figure, axes: list[list], title: str, lines: list[str], threshold: float) -> None:
    """Suptitle, and one colour bar for every panel (values at or below the threshold are not drawn)."""
    width = int(fig.get_figwidth() * 12)  # characters of 9-point text per line that fit
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in [title, *lines]), fontsize=9)
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=CMAP), ax=[a for r in axes for a in r],
                       shrink=0.9, fraction=0.04, pad=0.02, alpha=ALPHA)
    bar.ax.axhspan(0, threshold, facecolor="white", edgecolor="0.5", hatch="///", linewidth=0)
    bar.set_label(f"attribution, normalised;\n0 at or below threshold t = {threshold:g}", fontsize=7)
    bar.ax.tick_params(labelsize=7)


def _save(fig: Figure | None, path: Path) -> Path | None:
    """PNG, atomically, within :data:`MAX_BYTES` where it can be: at :data:`DPI` in full colour; if larger,
    with a 256-colour palette (median cut, no dithering: deterministic, text stays sharp); if still
    larger (photographs under many panels), the palette PNG at a lower DPI, down to :data:`MIN_DPI`.
    None (nothing written) for no figure."""
    if fig is None:
        return None
    dpi = DPI
    data = png_bytes(fig, dpi)
    while len(data) > MAX_BYTES:
        data = _palette(png_bytes(fig, dpi))
        if len(data) <= MAX_BYTES or dpi <= MIN_DPI:
            break
        dpi = max(MIN_DPI, int(dpi * 0.85))
    return write_atomic(Path(path), data)


def _palette(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- inputs ---------------------------------------------------------------------------------------
def _panel_titles(level: str, meta: dict, n: int) -> list[str]:
    if level == "ulam":
        return ["ULAM"]
    if level == "tlam":
        steps = meta.get("steps")
        if not steps:
            return [f"time group {g + 1}/{n}" for g in range(n)]
        spans = time_group_steps(int(steps), n)
        return [f"time group {g + 1}/{n}\n(step{'s' if a != b else ''} {a}{'-' + str(b) if a != b else ''})"
                for g, (a, b) in enumerate(spans)]
    if level == "hlam":
        return [f"head {i + 1}" for i in range(n)]
    layers = meta.get("layers") or []
    if len(layers) != n:
        return [f"layer {i + 1}" for i in range(n)]
    return [f"layer {short_layer_name(name, layers)}" for name in layers]


def _count(level: str, shown: int, total: int) -> str:
    one, many = MAP_LEVEL_UNITS[level]
    noun = one if total == 1 else many
    return f"{total} {noun}" if shown == total else f"first {shown} of {total} {noun}"


def _stored(path: Path) -> Path:
    """``path``, a file of a stored sample folder; FileNotFoundError naming the sample when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"sample {path.parent.name}: no {path.name} in {path.parent}")
    return path


def _load_maps(sample_dir: Path) -> SampleMaps:
    return SampleMaps.load(_stored(sample_dir / "maps.npz"))


def _read_rgb(path: Path) -> np.ndarray:
    """A stored PNG as (H, W, 3) uint8."""
    with Image.open(_stored(path)) as img:
        return np.asarray(img.convert("RGB"))

