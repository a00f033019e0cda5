from __future__ import annotations

import math

import pytest

from benchmark.metrics.results import MetricValue


def test_to_dict_is_flat() -> None:
    v = MetricValue(
        name="kid", value=1.5, implementation="clean-fid 0.1.35", mode="clean", resolution=(64, 48),
        n_samples=10, scale=1000.0, direction="lower", extra={"subset_size": 10},
    )
    row = v.to_dict()
    assert row["metric"] == "kid" and row["value"] == 1.5 and row["resolution_h"] == 64
    assert row["resolution_w"] == 48 and row["extra_subset_size"] == 10 and row["scale"] == 1000.0
    assert v.raw_value == pytest.approx(0.0015)


def test_missing_value() -> None:
    v = MetricValue.missing("fid", "inception-2015-12-05.pt not found in /x")
    assert not v.available and math.isnan(v.to_dict()["value"])


def test_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        MetricValue(name="fid", value=None)
    with pytest.raises(ValueError, match="exactly one"):
        MetricValue(name="fid", value=1.0, unavailable="why")
    with pytest.raises(ValueError, match="direction"):
        MetricValue(name="fid", value=1.0, direction="up")  # type: ignore[arg-type]
