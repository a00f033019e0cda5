"""docs/extending.md, followed as a new user would: one module and one registry line per extension.

The modules are ``tests/extension_example/*`` (a per-sample metric, an attribution method, a dataset format and
a model adapter); each is declared by the one registry line the docs give, and a tiny run shows each in its
pages. The registries are restored afterwards, so no other test sees these entries.
"""

import json
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from benchmark.cli import main
from benchmark.models.mini import save_tiny_random_model
from benchmark.registry import ADAPTERS, DATASET_FORMATS, METHODS, SAMPLE_METRICS, SET_METRICS
from benchmark.results.sample_maps import SampleMaps

REGISTRIES = (DATASET_FORMATS, ADAPTERS, SAMPLE_METRICS, SET_METRICS, METHODS)
N = 4  # the method leaderboard scores the second half of at least 4 samples


@contextmanager
def restored_registries():
    """Every registry as it was before the block, whatever the block added."""
    saved = [r.snapshot() for r in REGISTRIES]
    try:
        yield
    finally:
        for r, s in zip(REGISTRIES, saved):
            r.restore(s)


@pytest.fixture
def registries():
    with restored_registries():
        yield


def _declare():
    """The registry lines of docs/extending.md, one per extension."""
    SAMPLE_METRICS.add("mean_abs_error", "extension_example.mean_abs_error:mean_abs_error", label="MAE",
                       direction="lower", kind="quality", needs=("target",))
    METHODS.add("centre_prior", "extension_example.centre_prior:centre_prior", label="centre prior",
                reads="nothing: a Gaussian at the image centre")
    DATASET_FORMATS.add("flat_folder", "extension_example.flat_folder:FlatFolderDataset", layout="<root>/<id>.png")
    ADAPTERS.add("up_blocks_unet", "extension_example.up_blocks_unet:UpBlocksUNetAdapter")


@pytest.fixture
def run(tmp_path, registries):
    _declare()
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"img{i}.png")
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.yaml").write_text(yaml.safe_dump({
        "name": "flat", "version": 1, "dataset": {"format": "flat_folder", "root": str(data)},
        "metrics": [{"name": "psnr"}, {"name": "mean_abs_error"}]}))
    model = tmp_path / "model"  # conditions as the format's samples name them
    save_tiny_random_model(model, [("masked_image", "image"), ("mask", "mask")], num_inference_steps=2)
    cfg = {"name": "ext", "output_dir": str(tmp_path / "run"), "leaderboard_dir": str(tmp_path / "lb"),
           "batch_size": N, "shard_size": N, "capture": {"time_groups": 2}, "scoring": {"n_boot": 20},
           "tasks": [{"task": str(task), "models": [{"name": "up", "adapter": "up_blocks_unet", "path": str(model)}]}]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(tmp_path / "cfg.yaml"), "--scheduler", "inline"]) == 0
    return tmp_path


def test_each_extension_shows_in_the_run_pages(run):
    lb, store = run / "lb", run / "run" / "store"
    # The dataset format: its four samples are the task's, every one stored.
    maps = sorted(store.rglob("maps.npz"))
    assert sorted(p.parent.name for p in maps) == [f"img{i}" for i in range(N)]
    table = pd.read_csv(lb / "flat.csv")
    assert list(table.model) == ["up"] and int(table.n.iloc[0]) == N
    # The adapter: its model ran, and its capture read only the up-block layers.
    record = json.loads(next(store.rglob("result.json")).read_text())
    assert record["adapter"] == "up_blocks_unet"
    layers = SampleMaps.load(maps[0]).meta["layers"]
    assert layers and all(name.startswith("up_blocks.") for name in layers)
    # The metric: recomputed here from the stored output and the ground truth, in the CSV and on the page.
    sample = maps[0].parent
    pred = np.asarray(Image.open(sample / "generated.png").convert("RGB"), np.float64) / 255
    target = np.asarray(Image.open(run / "data" / f"{sample.name}.png").convert("RGB"), np.float64) / 255
    samples = pd.read_csv(run / "run" / "results" / "samples.csv", dtype={"sample_id": str})
    row = samples[(samples.metric == "mean_abs_error") & (samples.sample_id == sample.name)]
    assert row["value"].iloc[0] == pytest.approx(np.abs(pred - target).mean(), abs=2 / 255)
    assert np.isfinite(table["mean_abs_error"].iloc[0])
    page = (lb / "flat.md").read_text()  # the task's second quality metric: compact table and correlations
    assert "| PSNR ↑ | MAE ↓ |" in page and "| IMACS_g | −MAE |" in page
    # The method: rows of its own on the method leaderboard, next to the built-in ones.
    methods = pd.read_csv(lb / "methods.csv")
    assert {"centre prior", "I2AM all heads"} <= set(methods.method)
    assert "| up | centre prior |" in (lb / "methods.md").read_text()


def test_registries_are_restored_after_a_test_that_extends_them():
    before = [r.ordered() for r in REGISTRIES]
    with restored_registries():
        _declare()
        assert "mean_abs_error" in SAMPLE_METRICS and "centre_prior" in METHODS
        assert "flat_folder" in DATASET_FORMATS and "up_blocks_unet" in ADAPTERS
    assert [r.ordered() for r in REGISTRIES] == before


def test_incomplete_entries_fail_where_they_are_registered():
    with restored_registries():
        SAMPLE_METRICS.add("mae2", "extension_example.mean_abs_error:mean_abs_error", direction="lower",
                           kind="quality")
        assert SAMPLE_METRICS.info("mae2")["needs"] == ("target",)  # the default: compared with the ground truth
        with pytest.raises(ValueError, match=r"per-sample metric 'mae3': needs must name .*'region_mask'"):
            SAMPLE_METRICS.add("mae3", "m:f", direction="lower", kind="quality", needs=("region",))
        with pytest.raises(ValueError, match=r"per-sample metric 'mae4': direction must be one of"):
            SAMPLE_METRICS.add("mae4", "m:f", kind="quality")
        with pytest.raises(ValueError, match=r"set metric 'fid2': needs must be one of \['inception'\]"):
            SET_METRICS.add("fid2", "m:f", direction="lower")
