"""The attribution-method comparison: methods on both sides, output-space maps, paired differences."""

import numpy as np
import pandas as pd

from benchmark.imacs import imacs
from benchmark.methods.compare import CONCEPT, UNIFORM, compare_methods
from benchmark.report import paired_method_differences
from benchmark.results.sample_maps import SampleMaps

H = W = 8


def _box(y0, x0, size=4) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0 : y0 + size, x0 : x0 + size] = 1
    return m


def _store(tmp_path, n=8, concept=True):
    """n samples: head (0, 0) is exactly the region, the other heads noise; the output-space map is the
    region blurred by noise; reference maps mirror that on the reference mask."""
    rng = np.random.default_rng(0)
    dirs = []
    for i in range(n):
        region, ref = _box(i % 4, (i * 3) % 5), _box((i + 2) % 5, i % 4)
        lh_g = rng.random((2, 3, H, W)).astype(np.float32)
        lh_g[0, 0] = region * 5.0 + 0.01 * rng.random((H, W))
        lh_r = rng.random((2, 3, H, W)).astype(np.float32)
        lh_r[0, 0] = ref * 5.0 + 0.01 * rng.random((H, W))
        arrays = {"g/layer_heads": lh_g, "rm/layer_heads": lh_r, "mask/region": region, "mask/reference": ref}
        if concept:
            arrays["cg/concept"] = (region + 0.3 * rng.random((H, W))).astype(np.float32)
            arrays["cr/concept"] = (ref + 0.3 * rng.random((H, W))).astype(np.float32)
        d = tmp_path / f"s{i}"
        d.mkdir()
        SampleMaps(arrays, {"sample_id": f"s{i}", "reference_side": True}).save(d / "maps.npz")
        dirs.append(d)
    return dirs


def test_methods_scored_on_both_sides_against_an_independent_imacs(tmp_path):
    dirs = _store(tmp_path)
    frame, examples = compare_methods({("t", "m"): dirs}, set(), lam=3.0, thr=0.4, top_k=1)
    methods = set(frame.method)
    assert methods == {"I2AM all heads", CONCEPT, UNIFORM, "I2AM top-1 heads (supervised)",
                       "I2AM top-1 heads (label-free)"}
    assert set(frame.sample_id) == {f"s{i}" for i in range(4, 8)}  # evaluation half only
    for i in range(4, 8):
        m = SampleMaps.load(dirs[i] / "maps.npz")
        rows = frame[(frame.sample_id == f"s{i}")].set_index(["method", "metric"])["value"]
        assert np.isclose(rows[(CONCEPT, "imacs_g")], imacs(m.get("cg/concept"), m.get("mask/region")).as_float())
        assert np.isclose(rows[(CONCEPT, "imacs_r")], imacs(m.get("cr/concept"), m.get("mask/reference")).as_float())
        all_r = m.get("rm/layer_heads").mean((0, 1))
        assert np.isclose(rows[("I2AM all heads", "imacs_r")], imacs(all_r, m.get("mask/reference")).as_float())
        # The supervised ranking finds the exact head: a perfect map on both sides.
        assert rows[("I2AM top-1 heads (supervised)", "miou_g")] == 1.0
        assert rows[("I2AM top-1 heads (supervised)", "miou_r")] == 1.0
    assert (frame[(frame.method == UNIFORM) & (frame.metric == "imacs_g")].value < 0).all()
    assert set(examples[("t", "m")]) == methods


def test_random_init_models_get_labelled_baseline_rows_without_head_selection(tmp_path):
    frame, _ = compare_methods({("t", "rnd"): _store(tmp_path)}, {"rnd"}, top_k=1)
    assert set(frame.method) == {"I2AM all heads (random-init copy)", f"{CONCEPT} (random-init copy)"}


def test_no_concept_rows_for_models_without_output_space_maps(tmp_path):
    frame, _ = compare_methods({("t", "m"): _store(tmp_path, concept=False)}, set(), top_k=1)
    assert CONCEPT not in set(frame.method)


def test_paired_differences_equal_the_direct_per_sample_mean():
    rng = np.random.default_rng(1)
    rows = []
    for sid in range(12):
        base = rng.normal()
        for method, shift in (("I2AM all heads", 0.0), ("other", 0.5)):
            rows.append({"task": "t", "model": "m", "method": method, "sample_id": f"s{sid}", "metric": "imacs_g",
                         "value": base + shift + 0.1 * rng.normal()})
    frame = pd.DataFrame(rows)
    out = paired_method_differences(frame, n_boot=500)
    assert len(out) == 1 and out.iloc[0]["method"] == "other" and out.iloc[0]["n"] == 12
    wide = frame.pivot(index="sample_id", columns="method", values="value")
    assert np.isclose(out.iloc[0]["mean"], (wide["other"] - wide["I2AM all heads"]).mean())
    assert out.iloc[0]["ci_low"] < out.iloc[0]["mean"] < out.iloc[0]["ci_high"]
    assert out.iloc[0]["ci_low"] > 0  # a shift of 0.5 against noise of 0.14 is detected
