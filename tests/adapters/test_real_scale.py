"""Every adapter runs a sample at its published resolution through the run's code path (dataset in the real layout,
generation with capture, store, scores), on a random-init model of its published architecture at reduced width
(benchmark/models/published.py): the captured attentions keep the published token counts, heads and head width
(the DiTs: head width 128 with 2 heads instead of 24). The full widths run in ``perf --scale real``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.run.jobs import job_dir
from benchmark.models.published import PUBLISHED
from benchmark.perf.real import real_scale_run
from benchmark.registry import ADAPTERS
from benchmark.results.sample_maps import SampleMaps

# The published token grids, from the published sizes: generated (latent f = 8; FLUX Kontext packs 2x2 cells, so
# 16 pixels per token) and reference (CLIP ViT-L/14 at 224: 16x16 patches; one pooled token for PBE and the ldm
# model; Kontext's 512x512 reference at 16 px per token; the reference DiT's 512x384 reference at 8 px).
GRIDS = {
    "reference_unet": ((64, 48), (16, 16)),
    "paint_by_example": ((64, 64), None),
    "generic_unet": ((64, 48), (16, 16)),
    "ldm_unet": ((64, 64), None),
    "flux_kontext": ((64, 64), (32, 32)),
    "reference_dit": ((64, 48), (64, 48)),
}


def test_every_registered_adapter_has_a_published_setting():
    assert set(PUBLISHED) == set(ADAPTERS.names()) == set(GRIDS)


@pytest.mark.parametrize("adapter", list(GRIDS))
def test_a_published_resolution_sample_runs_end_to_end(adapter, tmp_path):
    run = real_scale_run(adapter, tmp_path, reduced=True, steps=1)
    record, cfg, job = run["record"], run["cfg"], run["job"]
    assert record.n_samples == 1 and not record.failures
    (sample,) = (job_dir(cfg, job) / "samples").iterdir()
    with Image.open(sample / "generated.png") as img:
        assert img.size[::-1] == PUBLISHED[adapter].size
    maps = SampleMaps.load(sample / "maps.npz")
    generated, reference = GRIDS[adapter]
    assert maps.get("g/ulam").shape == generated
    assert np.isfinite(maps.get("g/ulam")).all() and maps.get("g/ulam").std() > 0
    if reference is None:
        assert not any(k.startswith("r/") for k in maps.arrays)
    else:
        assert maps.get("r/ulam").shape == reference
    values = {r["metric"]: r["value"] for r in record.rows}
    assert {"psnr", "ssim"} <= values.keys() and all(np.isfinite(values[k]) for k in ("psnr", "ssim"))
    assert record.imacs_terms["samples"]  # IMACS terms from the in-memory maps
    assert {"maps.npz", "generated.png", "overlay.png"} <= {p.rsplit("/", 1)[-1] for p in record.files}
