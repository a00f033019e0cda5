"""Paired FID / KID above ``MAX_SET_SAMPLES`` shared samples: a row saying it was not computed (its bootstrap takes
an n x n SVD per resample), never a report that runs for a day; at the bound the difference is computed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.resampling import Resampling
from benchmark.report.pairs import MAX_SET_SAMPLES, SetFeatures, pairs_frame
from benchmark.report.store_view import FRAME_COLUMNS


def _pairs(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(n, 4))
    ids = [f"s{i}" for i in range(n)]
    gen = {"a": ref + rng.normal(0, 0.3, ref.shape), "b": ref + 1.0 + rng.normal(0, 0.3, ref.shape)}
    features = SetFeatures(("kid",), {m: dict(zip(ids, g)) for m, g in gen.items()}, dict(zip(ids, ref)))
    return pairs_frame(pd.DataFrame(columns=FRAME_COLUMNS), "t", set(), [],
                       Resampling(n_boot=20, n_permutations=99, seed=0), features=features)


def test_above_the_bound_no_difference_is_computed_and_the_row_says_why() -> None:
    row = _pairs(MAX_SET_SAMPLES + 1).iloc[0]
    assert row.n == MAX_SET_SAMPLES + 1 and np.isnan(row.mean_diff) and np.isnan(row.p_value)
    assert row.note == (f"not computed: {MAX_SET_SAMPLES + 1} samples > {MAX_SET_SAMPLES} "
                        "(an n x n SVD per bootstrap resample)")


def test_at_the_bound_the_difference_is_computed() -> None:
    row = _pairs(MAX_SET_SAMPLES).iloc[0]
    assert row.n == MAX_SET_SAMPLES and row.note == ""
    assert np.isfinite(row.mean_diff) and row.mean_diff < 0  # a is closer to the reference set
