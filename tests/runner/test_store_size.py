"""What a job stores (``store`` section, docs/store.md): float16 maps change no score, ``store.images`` writes only
what the manifest lists, and the config section is checked on load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmark.config import ConfigError, RunConfig
from benchmark.run.jobs import job_dir
from benchmark.scoring.maps import minmax
from benchmark.results.sample_maps import SampleMaps, normalisable
from benchmark.run.runner import execute, plan_jobs
from benchmark.store import GENERATION_CODE_VERSION, short_hash

from runner_helpers import report_tables, smoke_config, smoke_dict, stored_rows

FLOAT16_TOLERANCE = 2.0**-12 + 1e-6  # float16 rounding in [0, 1] (half the spacing below 1), float32 slack


def _records(cfg: RunConfig) -> dict[str, dict]:
    return {j.key.split("/", 3)[-1]: json.loads((job_dir(cfg, j) / "result.json").read_text())
            for j in plan_jobs(cfg).jobs}


def _sample_dirs(cfg: RunConfig):
    for job in plan_jobs(cfg).jobs:
        yield from sorted((job_dir(cfg, job) / "samples").iterdir())


def test_float16_maps_store_the_same_scores_and_maps_within_the_rounding(tiny_model, tmp_path):
    cfgs = {dt: smoke_config(tmp_path / dt, tiny_model, store={"maps_dtype": dt}) for dt in ("float16", "float32")}
    for cfg in cfgs.values():
        assert execute(cfg, scheduler="inline").finished == 2
    half, full = cfgs["float16"], cfgs["float32"]
    assert half.generation_key(half.tasks[0]) != full.generation_key(full.tasks[0])  # the stored maps differ
    assert stored_rows(half) == stored_rows(full)  # rows, mask areas: exactly, from the float32 maps in memory
    rec16, rec32 = _records(half), _records(full)
    assert rec16.keys() == rec32.keys()
    for shard in rec16:
        assert rec16[shard]["imacs_terms"] == rec32[shard]["imacs_terms"]
        assert rec16[shard]["store"]["maps_dtype"] == "float16"
    worst, n_maps = 0.0, 0
    for d16, d32 in zip(_sample_dirs(half), _sample_dirs(full)):
        m16, m32 = SampleMaps.load(d16 / "maps.npz"), SampleMaps.load(d32 / "maps.npz")
        assert m16.arrays.keys() == m32.arrays.keys() and m16.meta["maps_dtype"] == "float16"
        assert (d32 / "maps.npz").stat().st_size > (d16 / "maps.npz").stat().st_size
        for key, a in m32.arrays.items():
            b = m16.arrays[key]
            assert b.dtype == a.dtype and b.shape == a.shape  # load restores raw float32 maps
            if not normalisable(key, a):  # masks and the float16 SRAM volume: stored as they are
                np.testing.assert_array_equal(b, a)
                continue
            err = (minmax(torch.from_numpy(b)) - minmax(torch.from_numpy(a))).abs().nan_to_num(0).max().item()
            worst, n_maps = max(worst, err), n_maps + 1
    assert n_maps and worst <= FLOAT16_TOLERANCE
    print(f"max abs error of the float16 maps, normalised per map: {worst:.3g} over {n_maps} arrays")
    assert report_tables(half) == report_tables(full)  # the report reads the records: the same numbers


@pytest.mark.parametrize("images, kept", [("none", 0), ({"first": 1}, 1)])
def test_store_images_writes_and_lists_only_the_kept_pngs(tiny_model, tmp_path, images, kept):
    cfg = smoke_config(tmp_path, tiny_model, store={"images": images})
    assert execute(cfg, scheduler="inline").finished == 2
    assert cfg.generation_key(cfg.tasks[0]) == smoke_config(tmp_path, tiny_model).generation_key(cfg.tasks[0])
    for job in plan_jobs(cfg).jobs:
        out = job_dir(cfg, job)
        record = json.loads((out / "result.json").read_text())
        on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "result.json"}
        assert set(record["files"]) == on_disk  # the manifest lists exactly what was written
        for i, sid in enumerate(job.sample_ids):  # in the job's order
            pngs = {p.name for p in (out / "samples" / sid).glob("*.png")}
            assert pngs == ({"generated.png", "reference.png", "overlay.png"} if i < kept else set())
            assert (out / "samples" / sid / "maps.npz").is_file()
    report_tables(cfg)  # the figures are skipped (none) or drawn from the first sample (first: 1), cleanly
    page = (tmp_path / "leaderboards" / "viton_hd.md").read_text()
    assert ("Figures skipped for rand: no stored sample keeps its images" in page) == (kept == 0)


@pytest.mark.parametrize("store, message", [
    ({"maps_dtype": "float61"}, r"store.maps_dtype: expected one of \['float16', 'float32'\], got 'float61'; "
                                r"did you mean 'float16'\?"),
    ({"images": "nnone"}, r"store.images: expected all, none or \{first: N\}, got 'nnone'; did you mean 'none'\?"),
    ({"images": {"frist": 2}}, r"store.images: expected \{first: N\}, got key 'frist'; did you mean 'first'\?"),
    ({"images": {"first": -1}}, r"store.images.first: expected an integer >= 0, got -1"),
    ({"image": "all"}, r"store: unknown key 'image'; did you mean 'images'\?"),
])
def test_store_section_errors_name_the_key(tiny_model, tmp_path, store, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(smoke_dict(tmp_path, tiny_model, store=store))


def test_store_section_defaults_and_float32_keeps_earlier_keys(tiny_model, tmp_path):
    default = smoke_config(tmp_path, tiny_model)
    assert (default.store.maps_dtype, default.store.images, default.store.images_first) == ("float16", "all", None)
    assert smoke_config(tmp_path, tiny_model, store={"images": {"first": 3}}).store.images_first == 3
    full = smoke_config(tmp_path, tiny_model, store={"maps_dtype": "float32"})
    assert full.generation_key(full.tasks[0]) == short_hash({"seed": 0, "sampling": {},
                                                            "capture": dataclasses.asdict(full.capture),
                                                            "code": GENERATION_CODE_VERSION})
