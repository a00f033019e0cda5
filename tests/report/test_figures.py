"""Attribution-map figures: sizes, and content read back from the saved PNG.

The synthetic sample has blank white images and maps that are 1 on a known square and 0 elsewhere,
so in the saved PNG a panel is coloured inside the square and white outside it, and the mask outline
is the only magenta. Pixel positions come from each panel's own data-to-display transform.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

from benchmark.capture.accumulator import I2AMAccumulator
from benchmark.scoring.figures import scatter_figure
from benchmark.report import figures as F
from benchmark.results.sample_maps import SampleMaps

H = W = 32  # generated image; latent grid 8x8, 4 pixels a cell
HR = WR = 16  # reference image; token grid 4x4, 4 pixels a token
LAYERS = [f"down_blocks.{i}.attentions.0.transformer_blocks.0.attn2.processor" for i in range(2)]
MAGENTA = np.array(to_rgb(F.MASK_COLOUR)) * 255


def _square(shape, rows, cols):
    m = np.zeros(shape, np.float32)
    m[rows, cols] = 1
    return m


def _volume(cell=(2, 3)):
    """sr/volume (64, 16): ``cell`` (row, col) attends to tokens [0:2, 0:2], every other cell to [2:4, 2:4]
    (not a symmetric cell, so reading the volume transposed would show)."""
    vol = np.tile(_square((4, 4), slice(2, 4), slice(2, 4)).reshape(1, 16), (64, 1))
    vol[cell[0] * 8 + cell[1]] = _square((4, 4), slice(0, 2), slice(0, 2)).reshape(16)
    return vol.astype(np.float16)


@pytest.fixture
def sample(tmp_path):
    """Write a sample folder; keyword arguments replace (value) or drop (None) stored arrays / meta."""

    def make(name="s0", drop=(), meta=None, **arrays):
        d = tmp_path / name
        d.mkdir()
        Image.fromarray(np.full((H, W, 3), 255, np.uint8)).save(d / "generated.png")
        Image.fromarray(np.full((HR, WR, 3), 255, np.uint8)).save(d / "reference.png")
        g = _square((8, 8), slice(2, 6), slice(2, 6))  # image pixels 8..23
        r = _square((4, 4), slice(1, 3), slice(1, 3))  # reference pixels 4..11
        a = {"g/ulam": g, "g/tlam": np.stack([g] * 3), "g/hlam": np.stack([g] * 10), "g/llam": np.stack([g] * 2),
             "rm/ulam": r, "r/ulam": _square((4, 4), slice(2, 4), slice(2, 4)), "rm/tlam": np.stack([r] * 3),
             "rm/hlam": np.stack([r] * 10), "rm/llam": np.stack([r] * 2), "sr/volume": _volume(),
             "mask/region": _square((H, W), slice(8, 24), slice(8, 24)).astype(np.uint8),
             "mask/reference": _square((HR, WR), slice(4, 12), slice(4, 12)).astype(np.uint8)}
        a.update(arrays)
        a = {k: v for k, v in a.items() if k not in drop}
        m = {"layers": LAYERS, "latent_grid": [8, 8], "token_grid": [4, 4], "time_groups": 3, "steps": 7,
             "reference_side": True, **(meta or {})}
        SampleMaps(a, m).save(d / "maps.npz")
        return d

    return make


def _saved(fig, path):
    """Save through the module and decode: (H, W, 3) uint8, checked to be the figure's size at its DPI."""
    F._save(fig, path)
    img = np.asarray(Image.open(path).convert("RGB"))
    w, h = (fig.get_size_inches() * F.DPI).round().astype(int)
    assert img.shape == (h, w, 3)
    return img


def _pixel(img, ax, y, x):
    """RGB of the saved PNG at data point (y, x) of ``ax``."""
    dx, dy = ax.transData.transform((x, y))
    return img[int(img.shape[0] - dy), int(dx)].astype(int)


def _suptitle(fig):
    """The suptitle as one line (it wraps to the figure's width)."""
    return " ".join(fig._suptitle.get_text().split())


def _white(rgb):
    return bool(np.all(rgb >= 250))


def _magenta(rgb):
    return bool(np.abs(rgb - MAGENTA).max() < 60)


def _border_hits(img, ax, lo, hi):
    """How many points along the left edge (x = lo - 0.5) of the square [lo, hi) are magenta."""
    return sum(_magenta(_pixel(img, ax, y, lo - 0.5)) for y in np.linspace(lo + 1, hi - 2, 8))


# --- level figures --------------------------------------------------------------------------------
def test_level_figure_draws_maps_inside_the_square_and_mask_outlines(sample, tmp_path):
    d = sample()
    fig = F._level_figure(d, "tlam", 0.4, "object_inpainting / full / s0")
    img = _saved(fig, tmp_path / "tlam.png")
    gen_row, ref_row = fig.axes[:3], fig.axes[3:6]
    for ax in gen_row:
        inside, outside = _pixel(img, ax, 15.5, 15.5), _pixel(img, ax, 2, 2)
        assert _white(outside) and not _white(inside)
        assert inside[0] > inside[2] + 40  # the top of jet (red) over white, not a blue low value
        assert _border_hits(img, ax, 8, 24) >= 6
    for ax in ref_row:  # upsampled over the reference image: coloured on tokens [1:3] = pixels 4..11
        assert not _white(_pixel(img, ax, 7.5, 7.5)) and _white(_pixel(img, ax, 14, 14))
        assert _border_hits(img, ax, 4, 12) >= 6


def test_level_figure_titles_labels_and_colour_bar(sample):
    fig = F._level_figure(sample(), "tlam", 0.4, "object_inpainting / full / s0")
    titles = [ax.get_title() for ax in fig.axes[:3]]
    # 7 steps in 3 groups: group = step * 3 // 7 gives steps 1-3, 4-5, 6-7 (1-based)
    assert titles == ["time group 1/3\n(steps 1-3)", "time group 2/3\n(steps 4-5)", "time group 3/3\n(steps 6-7)"]
    assert fig.axes[0].get_ylabel() == "generated side\n(M_g)"
    assert fig.axes[3].get_ylabel() == "reference side\n(M_r, eq. 17)"
    assert "object_inpainting / full / s0" in _suptitle(fig) and "TLAM" in _suptitle(fig)
    colour_bars = [ax for ax in fig.axes if "threshold t = 0.4" in ax.get_ylabel()]
    assert len(colour_bars) == 1


def test_no_magenta_without_masks(sample, tmp_path):
    d = sample(drop=("mask/region", "mask/reference"))
    img = _saved(F._level_figure(d, "ulam", 0.4, "t"), tmp_path / "u.png")
    assert not np.any(np.abs(img.astype(int) - MAGENTA).max(-1) < 60)


def test_many_heads_are_capped_and_said_so(sample, tmp_path):
    fig = F._level_figure(sample(), "hlam", 0.4, "t")
    panels = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in panels[:F.MAX_PANELS]] == [f"head {i}" for i in range(1, 9)]
    assert len(panels) == 2 * F.MAX_PANELS
    assert "first 8 of 10 heads" in _suptitle(fig)


def test_layer_titles_are_short_names(sample):
    fig = F._level_figure(sample(), "llam", 0.4, "t")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["layer down0", "layer down1"]


def test_ulam_reference_row_draws_the_eq17_map(sample, tmp_path):
    fig = F._level_figure(sample(), "ulam", 0.4, "t")
    img = _saved(fig, tmp_path / "u.png")
    ref = fig.axes[1]
    assert ref.get_title() == "ULAM"
    # rm/ulam is on tokens [1:3] (pixels 4..11), r/ulam on tokens [2:4]: the drawn one is rm
    assert not _white(_pixel(img, ref, 5, 5)) and _white(_pixel(img, ref, 14, 14))


def test_level_figure_file_and_absent_level(sample, tmp_path):
    d = sample(drop=("g/llam",))
    out = F.level_figure(d, "hlam", 0.4, tmp_path / "figs" / "hlam.png", "t")
    assert out == tmp_path / "figs" / "hlam.png" and Image.open(out).size[0] > 0
    assert F.level_figure(d, "llam", 0.4, tmp_path / "llam.png", "t") is None
    assert not (tmp_path / "llam.png").exists()
    with pytest.raises(ValueError, match="unknown map level 'slam'"):
        F.level_figure(d, "slam", 0.4, tmp_path / "x.png", "t")


def test_single_token_model_has_no_reference_row(sample):
    fig = F._level_figure(sample(meta={"reference_side": False}), "ulam", 0.4, "t")
    assert len([ax for ax in fig.axes if ax.get_title() == "ULAM"]) == 1
    assert "not applicable (single reference token)" in _suptitle(fig)


def test_constant_map_says_no_attribution(sample):
    fig = F._level_figure(sample(**{"g/ulam": np.ones((8, 8), np.float32)}), "ulam", 0.4, "t")
    assert any("no attribution" in t.get_text() for t in fig.axes[0].texts)


def test_missing_image_names_the_sample(sample):
    d = sample()
    (d / "reference.png").unlink()
    with pytest.raises(FileNotFoundError, match="sample s0: no reference.png"):
        F._level_figure(d, "ulam", 0.4, "t")


def test_same_inputs_same_bytes(sample, tmp_path):
    d = sample()
    a = F.level_figure(d, "ulam", 0.4, tmp_path / "a.png", "t").read_bytes()
    b = F.level_figure(d, "ulam", 0.4, tmp_path / "b.png", "t").read_bytes()
    assert a == b


# --- specific-reference maps ----------------------------------------------------------------------
def test_sram_positions_on_a_square_region():
    region = torch.from_numpy(_square((H, W), slice(8, 24), slice(8, 24)))  # cells 2..5
    # centroid (3.5, 3.5): nearest inside cells tie, raster order gives (3, 3); top edge row 2, columns
    # 3 and 4 equally near the centroid column; corners (0, 0) and (7, 7) both sqrt(8) from the region
    assert F.sram_positions(region, (8, 8)) == [("inside (centre)", (3, 3)), ("region edge", (2, 3)),
                                                ("outside (farthest)", (0, 0))]
    assert [p for _, p in F.sram_positions(None, (8, 8))] == [(2, 2), (4, 4), (5, 5)]


def test_sram_positions_brute_force_on_a_blob():
    rng = np.random.default_rng(3)
    inside = np.zeros((10, 12), bool)
    inside[2:7, 3:9] = True
    inside[rng.random(inside.shape) < 0.15] ^= True
    region = torch.from_numpy(np.kron(inside, np.ones((3, 3))).astype(np.float32))  # 30x36, 3x3 per cell
    (_, c), (_, e), (_, o) = F.sram_positions(region, inside.shape)
    cells = np.argwhere(inside)
    assert inside[c] and inside[e] and not inside[o]
    neighbours = [(e[0] + dy, e[1] + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    assert any(0 <= y < 10 and 0 <= x < 12 and not inside[y, x] for y, x in neighbours)
    dist = {tuple(p): np.sqrt(((cells - p) ** 2).sum(1)).min() for p in np.argwhere(~inside)}
    assert dist[o] == max(dist.values())
    centroid = cells.mean(0)
    assert np.isclose(((np.array(c) - centroid) ** 2).sum(), ((cells - centroid) ** 2).sum(1).min())


def test_sram_figure_shows_each_positions_own_row(sample, tmp_path):
    fig = F._sram_figure(sample(), "t", None, 0.4)
    img = _saved(fig, tmp_path / "sram.png")
    top, bottom = fig.axes[:3], fig.axes[3:6]
    assert [ax.get_title() for ax in top] == ["inside (centre)\n(row 3, col 3)", "region edge\n(row 2, col 3)",
                                               "outside (farthest)\n(row 0, col 0)"]
    assert [ax.get_title() for ax in bottom] == ["M_sr(3, 3)", "M_sr(2, 3)", "M_sr(0, 0)"]
    for ax, (a, b) in zip(top, [(3, 3), (2, 3), (0, 0)]):
        (cell,) = ax.patches
        assert cell.get_xy() == (b * 4 - 0.5, a * 4 - 0.5) and cell.get_width() == 4
    # the edge cell (2, 3) attends to reference pixels 0..7, the others to 8..15 (see _volume)
    for ax, special in zip(bottom, (False, True, False)):
        assert _white(_pixel(img, ax, 2, 2)) != special and _white(_pixel(img, ax, 13.5, 13.5)) == special


def test_sram_figure_explicit_positions_and_absent_volume(sample, tmp_path):
    d = sample()
    fig = F._sram_figure(d, "t", [(3, 3), (7, 7)], 0.4)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["position 1\n(row 3, col 3)", "position 2\n(row 7, col 7)"]
    with pytest.raises(ValueError, match=r"positions \[\(8, 0\)\] lie outside the latent grid 8x8"):
        F.sram_figure(d, tmp_path / "x.png", "t", positions=[(8, 0)])
    assert F.sram_figure(sample("s1", drop=("sr/volume",)), tmp_path / "y.png", "t") is None
    assert F.sram_figure(d, tmp_path / "s.png", "t").is_file()


# --- methods --------------------------------------------------------------------------------------
def test_methods_figure_one_titled_panel_per_method(sample, tmp_path):
    d = sample()
    square = torch.from_numpy(_square((8, 8), slice(2, 6), slice(2, 6)))
    maps = {"I2AM all heads": square, "uniform": None, "flat": torch.ones(8, 8)}
    region = _square((H, W), slice(8, 24), slice(8, 24))
    fig = F._methods_figure(d / "generated.png", maps, region, 0.4, "object_inpainting / full")
    img = _saved(fig, tmp_path / "m.png")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(maps)
    assert not _white(_pixel(img, panels[0], 15.5, 15.5)) and _white(_pixel(img, panels[0], 2, 2))
    assert _white(_pixel(img, panels[1], 12, 12))  # no map drawn (the note sits at the centre)
    assert [t.get_text() for t in panels[1].texts] == ["no map"]
    assert "no attribution" in panels[2].texts[0].get_text()
    for ax in panels:
        assert _border_hits(img, ax, 8, 24) >= 6
    out = F.methods_figure(d / "generated.png", maps, None, 0.4, tmp_path / "m2.png", "t")
    assert out.is_file()


# --- helpers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps, groups", [(7, 3), (20, 5), (10, 10), (9, 1), (50, 4)])
def test_time_group_steps_follow_the_accumulator(steps, groups):
    acc = SimpleNamespace(num_steps=steps, num_groups=groups)
    owner = [I2AMAccumulator.group_of(acc, s) for s in range(steps)]
    expected = [(owner.index(g) + 1, len(owner) - owner[::-1].index(g)) for g in range(groups)]
    assert F.time_group_steps(steps, groups) == expected


def test_short_layer_names():
    unet = ["down_blocks.0.attentions.1.transformer_blocks.0.attn2.processor",
            "mid_block.attentions.0.transformer_blocks.0.attn2.processor"]
    assert [F.short_layer_name(n, unet) for n in unet] == ["down0.a1", "mid.a0"]
    ldm = ["input_blocks.4.1.transformer_blocks.0.attn2", "output_blocks.11.1.transformer_blocks.0.attn2"]
    assert [F.short_layer_name(n, ldm) for n in ldm] == ["in4", "out11"]
    assert F.short_layer_name("transformer_blocks.3.attn") == "tb3.attn"


def test_scatter_figure_labels_units_and_outside_legend():
    rows = [{"model": m, "sample_id": f"s{i}", "metric": k, "value": float(v)}
            for m in ("a", "b") for i in range(4) for k, v in (("imacs_g", i / 4), ("masked_psnr", 20 + i))]
    fig = scatter_figure(pd.DataFrame(rows), ["masked_psnr"])
    (ax,) = fig.axes
    assert ax.get_xlabel() == "IMACS_g (no unit, range [-λ, 1]; higher is better)"
    assert ax.get_ylabel() == "masked PSNR (dB; higher is better)"
    assert ax.get_title() == "IMACS_g against masked PSNR"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    fig.draw_without_rendering()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the axes, not over the points
    assert scatter_figure(pd.DataFrame(rows), []) is None


def test_scatter_colours_follow_the_model_when_a_side_is_missing():
    rows = [{"model": m, "sample_id": f"s{i}", "metric": k, "value": float(i)}
            for m in ("a", "b") for i in range(3) for k in ("imacs_g", "imacs_r", "ssim") if (m, k) != ("a", "imacs_r")]
    fig = scatter_figure(pd.DataFrame(rows), ["ssim"])
    g_axes, r_axes = fig.axes
    b_colour = g_axes.collections[1].get_facecolor()[0]
    (only_b,) = r_axes.collections
    assert np.allclose(only_b.get_facecolor()[0], b_colour)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]


def test_unreadable_sample_maps_are_skipped_with_a_note(sample, tmp_path):
    from benchmark.report.figures_page import Figures, model_figures, stamps_of

    sample = sample()
    broken = tmp_path / "broken" / "s0"
    broken.mkdir(parents=True)
    (broken / "maps.npz").write_bytes(b"PK\x03\x04 not a zip")
    for name in ("generated.png", "reference.png"):  # its images are there; only its maps are unreadable
        (broken / name).write_bytes((sample / name).read_bytes())
    cfg = SimpleNamespace(scoring=SimpleNamespace(threshold=0.4), out_dir=tmp_path)
    view = SimpleNamespace(dirs=lambda task, model: {"good": [sample], "bad": [broken]}[model])
    lb = tmp_path / "lb"
    figures = Figures(lb / "figures", 1)
    lines = model_figures(cfg, view, "t", ["bad", "good"], lb, figures)
    note = next(ln for ln in lines if ln.startswith("Figures skipped"))
    assert "sample s0" in note and "verify" in note
    drawn = len(figures.scheduled)
    assert drawn and all(args[0] == sample for _, args, *_ in figures.scheduled)  # only the readable sample
    # a figure whose stored inputs vanish before drawing is skipped too, and left unstamped for the next report
    out = lb / "figures" / "x.png"
    figures.schedule("benchmark.report.figures:level_figure", (tmp_path / "gone", "ulam", 0.4, out, "t"), out, "s")
    figures.finish()
    stamps = stamps_of(lb / "figures")
    assert "x.png" not in stamps and len(stamps) == drawn
