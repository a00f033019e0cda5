"""The attribution-method comparison: methods on both sides, output-space maps, paired differences.

Every score is recomputed here from the arrays the test stored, with the numpy IMACS of
``imacs_reference`` and numpy head rankings, not with the package's own functions.
"""

import numpy as np
import pandas as pd
import pytest

from benchmark.analysis.resampling import Resampling
from benchmark.methods.compare import CONCEPT, UNIFORM, compare_methods, paired_differences
from benchmark.results.sample_maps import SampleMaps
from imacs_reference import reference_imacs

H = W = 8
LAM, THR = 3.0, 0.4
# The methods these tests know (registry names): a method registered later does not change their expectations.
BUILT_IN = ("i2am", "concept", "i2am_top_k", "uniform")


def _box(y0, x0, size=4) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0 : y0 + size, x0 : x0 + size] = 1
    return m


def _make(n=8, concept=True) -> list[dict[str, np.ndarray]]:
    """n samples: head (0, 0) is exactly the region, the other heads noise; the output-space map is the
    region blurred by noise; reference maps mirror that on the reference mask. The reference-side
    output-space map lives on a 4x4 token grid, so scoring it resizes it to the 8x8 reference mask."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        region, ref = _box(i % 4, (i * 3) % 5), _box((i + 2) % 5, i % 4)
        lh_g = rng.random((2, 3, H, W)).astype(np.float32)
        lh_g[0, 0] = region * 5.0 + 0.01 * rng.random((H, W))
        lh_r = rng.random((2, 3, H, W)).astype(np.float32)
        lh_r[0, 0] = ref * 5.0 + 0.01 * rng.random((H, W))
        arrays = {"g/layer_heads": lh_g, "rm/layer_heads": lh_r, "mask/region": region, "mask/reference": ref}
        if concept:
            arrays["cg/concept"] = (region + 0.3 * rng.random((H, W))).astype(np.float32)
            pooled = ref.reshape(4, 2, 4, 2).mean((1, 3))
            arrays["cr/concept"] = (pooled + 0.3 * rng.random((4, 4))).astype(np.float32)
        samples.append(arrays)
    return samples


def _save(tmp_path, samples) -> list:
    dirs = []
    for i, arrays in enumerate(samples):
        d = tmp_path / f"s{i}"
        d.mkdir()
        SampleMaps(arrays, {"sample_id": f"s{i}", "reference_side": True}).save(d / "maps.npz")
        dirs.append(d)
    return dirs


def _store(tmp_path, n=8, concept=True) -> list:
    return _save(tmp_path, _make(n, concept))


def _best_head(calibration, score) -> tuple[int, int]:
    """The top (layer, head) by mean relevance over the calibration samples, computed in numpy:
    supervised = mean IMACS_g of the head's map; label-free = mean Pearson r with the all-head mean."""
    lh0 = calibration[0]["g/layer_heads"]
    values = np.zeros(lh0.shape[:2])
    for s in calibration:
        lh = s["g/layer_heads"].astype(np.float64)
        consensus = lh.mean((0, 1)).ravel()
        for l in range(lh.shape[0]):
            for n in range(lh.shape[1]):
                if score == "supervised":
                    values[l, n] += reference_imacs(lh[l, n], s["mask/region"], LAM, THR)
                else:
                    values[l, n] += np.corrcoef(lh[l, n].ravel(), consensus)[0, 1]
    best = np.unravel_index(np.argmax(values), values.shape)
    assert np.sort(values.ravel())[-2] < values[best] - 1e-3, "the test needs a clear winner"
    return int(best[0]), int(best[1])


def test_methods_scored_on_both_sides_against_an_independent_imacs(tmp_path):
    samples = _make()
    frame, examples = compare_methods({("t", "m"): _save(tmp_path, samples)}, set(), lam=LAM, thr=THR, top_k=1,
                                       methods=BUILT_IN)
    methods = set(frame.method)
    assert methods == {"I2AM all heads", CONCEPT, UNIFORM, "I2AM top-1 heads (supervised)",
                       "I2AM top-1 heads (label-free)"}
    assert set(frame.sample_id) == {f"s{i}" for i in range(4, 8)}  # evaluation half only
    calibration = samples[:4]
    heads = {"supervised": _best_head(calibration, "supervised"), "label-free": _best_head(calibration, "label_free")}
    assert heads["supervised"] == (0, 0)  # the head that is the region
    for i in range(4, 8):
        s = samples[i]
        region, ref = s["mask/region"], s["mask/reference"]
        lh_g, lh_r = s["g/layer_heads"], s["rm/layer_heads"]
        rows = frame[(frame.sample_id == f"s{i}")].set_index(["method", "metric"])["value"]
        expected = {
            (CONCEPT, "imacs_g"): reference_imacs(s["cg/concept"], region, LAM, THR),
            (CONCEPT, "imacs_r"): reference_imacs(s["cr/concept"], ref, LAM, THR),
            ("I2AM all heads", "imacs_g"): reference_imacs(lh_g.mean((0, 1)), region, LAM, THR),
            ("I2AM all heads", "imacs_r"): reference_imacs(lh_r.mean((0, 1)), ref, LAM, THR),
        }
        for score, head in heads.items():  # heads ranked on the generated side serve both sides
            expected[(f"I2AM top-1 heads ({score})", "imacs_g")] = reference_imacs(lh_g[head], region, LAM, THR)
            expected[(f"I2AM top-1 heads ({score})", "imacs_r")] = reference_imacs(lh_r[head], ref, LAM, THR)
        for key, value in expected.items():
            assert np.isfinite(value) and rows[key] == pytest.approx(value, abs=1e-5), key
        # The supervised ranking finds the exact head: a perfect map on both sides.
        assert rows[("I2AM top-1 heads (supervised)", "miou_g")] == 1.0
        assert rows[("I2AM top-1 heads (supervised)", "miou_r")] == 1.0
        # A uniform map (all ones, predicts every pixel as foreground) on a 16-of-64-pixel box:
        # IMACS = 1 - 3 * 1 = -2; pixel accuracy = AP = 16/64; IoU fg = 16/64, IoU bg = 0, mIoU = 1/8.
        for side in ("g", "r"):
            assert rows[(UNIFORM, f"imacs_{side}")] == pytest.approx(-2.0)
            assert rows[(UNIFORM, f"pixel_acc_{side}")] == pytest.approx(0.25)
            assert rows[(UNIFORM, f"ap_{side}")] == pytest.approx(0.25)
            assert rows[(UNIFORM, f"miou_{side}")] == pytest.approx(0.125)
    assert set(examples[("t", "m")]) == methods
    np.testing.assert_allclose(examples[("t", "m")]["I2AM all heads"].numpy(),
                               samples[4]["g/layer_heads"].mean((0, 1)), rtol=1e-6)


def test_random_init_models_get_labelled_baseline_rows_without_head_selection(tmp_path):
    frame, _ = compare_methods({("t", "rnd"): _store(tmp_path)}, {"rnd"}, top_k=1, methods=BUILT_IN)
    assert set(frame.method) == {"I2AM all heads (random-init copy)", f"{CONCEPT} (random-init copy)"}


def test_no_concept_rows_for_models_without_output_space_maps(tmp_path):
    frame, _ = compare_methods({("t", "m"): _store(tmp_path, concept=False)}, set(), top_k=1, methods=BUILT_IN)
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
    out = paired_differences(frame, resampling=Resampling(n_boot=500))
    assert len(out) == 1 and out.iloc[0]["method"] == "other" and out.iloc[0]["n"] == 12
    wide = frame.pivot(index="sample_id", columns="method", values="value")
    assert np.isclose(out.iloc[0]["mean"], (wide["other"] - wide["I2AM all heads"]).mean())
    assert out.iloc[0]["ci_low"] < out.iloc[0]["mean"] < out.iloc[0]["ci_high"]
    assert out.iloc[0]["ci_low"] > 0  # a shift of 0.5 against noise of 0.14 is detected
