"""The whole path on tiny random models: generate + capture -> store -> scores -> leaderboards."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.cli import main
from benchmark.scoring.imacs import imacs
from benchmark.models.mini import save_tiny_random_dit, save_tiny_random_model
from benchmark.results.sample_maps import SampleMaps

TASKS = {
    "viton_hd": [("masked_image", "image"), ("mask", "mask"), ("pose", "image")],
    "object_inpainting": [("masked_image", "image"), ("mask", "mask")],
    "super_resolution": [("lr_up", "image")],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    tasks = []
    for task, conditions in TASKS.items():
        save_tiny_random_model(tmp / task / "patch", conditions, num_inference_steps=2)
        save_tiny_random_model(tmp / task / "cls", conditions, reference_tokens="cls", seed=1, num_inference_steps=2)
        tasks.append({"task": f"tasks/{task}", "max_samples": 3, "models": [
            {"name": "rand-patch", "adapter": "reference_unet", "path": str(tmp / task / "patch")},
            {"name": "rand-cls", "adapter": "reference_unet", "path": str(tmp / task / "cls")}]})
        if task == "object_inpainting":  # a joint-attention transformer through the same runner
            save_tiny_random_dit(tmp / task / "dit", conditions, num_inference_steps=2)
            tasks[-1]["models"].append({"name": "rand-dit", "adapter": "reference_dit", "path": str(tmp / task / "dit")})
            tasks[-1]["max_samples"] = 4  # the method leaderboard needs two halves of at least 2 samples
    cfg = {"name": "e2e", "label": "tiny random model", "output_dir": str(tmp / "run"),
           "leaderboard_dir": str(tmp / "lb"), "batch_size": 2, "shard_size": 2,
           "capture": {"time_groups": 2}, "scoring": {"n_boot": 50}, "tasks": tasks}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(path), "--scheduler", "inline"]) == 0
    return tmp


def test_store_has_every_sample_output(run):
    maps = sorted((run / "run" / "store").rglob("maps.npz"))
    assert len(maps) == 2 * 2 * 3 + 3 * 4  # two tasks x 2 models x 3 samples; object inpainting 3 models x 4
    for p in maps:
        assert (p.parent / "generated.png").is_file() and (p.parent / "overlay.png").is_file()
    m = SampleMaps.load(maps[0])
    for key in ("model", "layers", "latent_grid", "token_grid", "steps", "time_groups"):
        assert key in m.meta
    assert m.arrays["g/tlam"].shape[0] == 2


def test_imacs_rows_recompute_from_stored_maps(run):
    frame = pd.read_csv(run / "run" / "results" / "samples.csv", dtype={"sample_id": str})
    checked = 0
    for p in (run / "run" / "store").rglob("maps.npz"):
        m = SampleMaps.load(p)
        if "mask/region" not in m.arrays:
            continue
        row = frame[(frame.model == m.meta["model"]) & (frame.task == m.meta["task"]) &
                    (frame.sample_id == p.parent.name) & (frame.metric == "imacs_g")]
        expected = imacs(m.get("g/ulam"), m.get("mask/region")).as_float()
        assert np.isclose(row["value"].iloc[0], expected, equal_nan=True, atol=1e-6)
        # any other (lambda, threshold) comes from the same file, no regeneration
        assert imacs(m.get("g/ulam"), m.get("mask/region"), lam=0.0, threshold=0.0).value is not None
        checked += 1
    assert checked > 0


def test_cls_only_models_report_imacs_r_not_applicable(run):
    frame = pd.read_csv(run / "run" / "results" / "samples.csv", dtype={"sample_id": str})
    r = frame[(frame.model == "rand-cls") & (frame.metric == "imacs_r")]
    assert len(r) > 0 and r["value"].isna().all() and r["note"].str.contains("not applicable").all()


def test_leaderboards_render_from_store(run):
    lb = run / "lb"
    for task in TASKS:
        assert (lb / f"{task}.csv").is_file()
        md = (lb / f"{task}.md").read_text()
        assert "tiny random model" in md and "IMACS_g ↑" in md
        assert md.index("## Verdict") < md.index("IMACS_g ↑")  # the verdict comes first
        # the maps live on a page per model, linked from the task page; the trend is on the task page
        for model in ("rand-patch", "rand-cls"):
            assert f"]({task}/{model}.md)" in md and f"](../figures/{task}/{model}/ulam.png)" in (
                lb / task / f"{model}.md").read_text()
        assert "![ulam]" not in md
        assert f"](figures/{task}/trend.png)" in md and (lb / "figures" / task / "trend.png").is_file()
        table = pd.read_csv(lb / f"{task}.csv")
        assert set(table.model) == {"rand-patch", "rand-cls"} | ({"rand-dit"} if task == "object_inpainting" else set())
    assert (lb / "README.md").is_file() and (lb / "history.csv").is_file()
    assert any((lb / "figures").rglob("sweep_imacs_g.png"))
    assert json.loads((run / "run" / "run_summary.json").read_text())["failed"] == []


def test_report_twice_leaves_history_alone(run, tmp_path):
    cfg = run / "cfg.yaml"
    history = (run / "lb" / "history.csv").read_text()
    assert len(pd.read_csv(run / "lb" / "history.csv")) > 0  # the run that executed jobs recorded itself
    for _ in range(2):
        assert main(["report", "--config", str(cfg)]) == 0  # a rebuild never records
    assert (run / "lb" / "history.csv").read_text() == history
    page = (run / "lb" / "viton_hd.md").read_text()
    assert "(+0.000)" not in page and "(-0.000)" not in page  # nor compares the run with itself


def _store_imacs_g(run, task: str) -> dict[tuple[str, str], float]:
    """(model, sample id) -> IMACS_g recomputed from the stored map and mask (not from the stored terms)."""
    out = {}
    for p in (run / "run" / "store").rglob("maps.npz"):
        m = SampleMaps.load(p)
        if m.meta["task"] == task:
            out[(m.meta["model"], m.meta["sample_id"])] = imacs(m.get("g/ulam"), m.get("mask/region")).as_float()
    return out


def test_leaderboard_cells_recompute_from_the_store(run):
    """A mean of the leaderboard and a correlation of the report, recomputed from the stored samples alone."""
    from scipy import stats

    scores = _store_imacs_g(run, "object_inpainting")
    table = pd.read_csv(run / "lb" / "object_inpainting.csv").set_index("model")
    for model in ("rand-patch", "rand-dit"):
        values = [v for (m, _), v in scores.items() if m == model]
        assert len(values) == 4
        assert table.loc[model, "imacs_g"] == pytest.approx(np.nanmean(values), rel=1e-5)
    psnr = {}
    for p in (run / "run" / "store").rglob("result.json"):
        rec = json.loads(p.read_text())
        if rec["task"] == "object_inpainting":
            psnr.update({(rec["model"], r["sample_id"]): r["value"] for r in rec["rows"] if r["metric"] == "masked_psnr"})
    keys = sorted(k for k in scores if np.isfinite(scores[k]) and k in psnr)
    expected = stats.spearmanr([scores[k] for k in keys], [psnr[k] for k in keys]).statistic
    corr = pd.read_csv(run / "run" / "results" / "correlations.csv")
    pooled = corr[(corr.task == "object_inpainting") & (corr.x == "imacs_g") & (corr.y == "masked_psnr")
                  & (corr.scope == "pooled") & (corr.method == "spearman")]
    assert len(pooled) == 1 and pooled["n"].iloc[0] == len(keys)
    assert pooled["statistic"].iloc[0] == pytest.approx(expected, rel=1e-5, abs=1e-6)  # CSV keeps 6 digits


def test_dit_stores_output_space_maps_and_the_method_leaderboard_compares_them(run):
    dit_maps = [SampleMaps.load(p) for p in (run / "run" / "store").rglob("maps.npz")]
    dit_maps = [m for m in dit_maps if m.meta["model"] == "rand-dit"]
    assert len(dit_maps) == 4
    for m in dit_maps:
        assert m.arrays["cg/concept"].shape == tuple(m.meta["latent_grid"])
        assert m.arrays["cr/concept"].shape == tuple(m.meta["token_grid"])
        assert np.isfinite(m.arrays["cg/concept"]).all() and m.arrays["g/layer_heads"].shape[:2] == (4, 4)
    methods = pd.read_csv(run / "lb" / "methods.csv")
    dit = methods[methods.model == "rand-dit"]
    assert "ConceptAttention-style (output space)" in set(dit.method)
    assert "ConceptAttention-style (output space)" not in set(methods[methods.model == "rand-patch"].method)
