"""The capture-overhead benchmark's model and table (no timing is asserted)."""

import argparse

import pytest
import torch

from benchmark.capture import cross_attention_layers
from benchmark.perf.capture import BASE, ModeTimes, PerfReport, main, render, sd15_unet


def test_sd15_unet_has_the_sd15_cross_attention_layout():
    with torch.device("meta"):  # the architecture only: no memory, no initialisation cost
        unet = sd15_unet(torch.device("meta"))
    layers = cross_attention_layers(unet)
    assert len(layers) == 16
    assert {unet.get_submodule(k.removesuffix(".processor")).heads for k in layers} == {8}
    assert unet.config.cross_attention_dim == 768
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)


def test_table_reports_medians_round_ratios_minimums_and_capture_cost():
    times = {
        BASE: ModeTimes(wall=[1.0, 2.0, 1.0], cpu=[1.0, 2.0, 1.0], call=[0.05, 0.1, 0.05], call_cpu=[0.05, 0.1, 0.05],
                        attn=[0.01, 0.01, 0.01], peak_bytes=3 << 20),
        "captured": ModeTimes(wall=[1.1, 2.0, 1.3], cpu=[1.0, 2.2, 1.0], call=[0.055, 0.1, 0.06],
                              call_cpu=[0.055, 0.1, 0.06], attn=[0.012, 0.0125, 0.013],
                              state_bytes=1 << 20, peak_bytes=4 << 20),
    }
    table = render(PerfReport("Title", "info", "generation", times, cpu_device=True, notes=["a note"]))
    lines = table.splitlines()
    assert lines[0] == "### Title" and "a note" in lines
    rows = [line for line in lines if line.startswith("| captured")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # wall: medians 1.3 / 1.0; round ratios +10%, 0%, +30%; minimums 1.1 / 1.0
    assert cells[1] == "1.300 (1.100..2.000)"
    assert cells[2] == "+30.0%; +10.0% (+0.0%..+30.0%); +10.0%"
    # capture cost: cross-attention medians 12.5 - 10 ms, against the 50 ms median uncaptured UNet call
    assert cells[-3] == "+2.50 ms = +5.0%"
    assert cells[-2:] == ["1.00", "4"]  # state MiB, peak MiB
    assert "baseline" in next(line for line in lines if line.startswith(f"| {BASE}"))


def test_unknown_scale_is_an_error():
    with pytest.raises(ValueError, match="unknown perf scale 'sdxl'"):
        main(argparse.Namespace(scale="sdxl"))
