"""The report resamples as its config says: one :class:`Resampling` built from ``scoring.n_boot`` and ``seed``
reaches the frames it writes (checked against the analyses run directly with those settings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.analysis import METHODS, Resampling, bootstrap_mean, within_between
from benchmark.config import RunConfig
from benchmark.defaults import IMACS_SCORES
from benchmark.perf import synthetic_store
from benchmark.report import build_report
from benchmark.report.build import N_PERMUTATIONS, resampling
from benchmark.report.store_view import load_view, sample_frame

N_BOOT, SEED = 37, 5  # neither the default of Resampling nor of the config


def test_the_report_settings_are_the_configs():
    cfg = RunConfig.from_dict({"name": "x", "seed": SEED, "scoring": {"n_boot": N_BOOT},
                               "tasks": [{"task": "tasks/viton_hd",
                                          "models": [{"name": "m", "adapter": "reference_unet", "path": "nowhere"}]}]})
    assert resampling(cfg) == Resampling(n_boot=N_BOOT, n_permutations=N_PERMUTATIONS, confidence=0.95, seed=SEED)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A synthetic store (3 models, 12 samples) whose config sets n_boot and seed, and its report."""
    root = tmp_path_factory.mktemp("resampling")
    plain = synthetic_store.config_dict

    def config_dict(*args, **kwargs) -> dict:
        # one worker process: starting more costs more than this report's figures
        return {**plain(*args, **kwargs), "seed": SEED, "scoring": {"n_boot": N_BOOT}, "cluster": {"workers": 1}}

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I2AM_CACHE_DIR", str(root / "cache"))
        mp.setattr(synthetic_store, "config_dict", config_dict)
        cfg = RunConfig.load(synthetic_store.write_store(root / "run", 3, 12, tasks=("tasks/viton_hd",)))
        build_report(cfg)
    return cfg


def test_the_configs_settings_reach_the_frames(report):
    cfg, res = report, report.out_dir / "results"
    assert (cfg.seed, cfg.scoring.n_boot) == (SEED, N_BOOT)
    samples = sample_frame(load_view(cfg))  # exact values (the CSVs hold 6 digits)
    settings = Resampling(n_boot=N_BOOT, seed=SEED)

    # Leaderboard cells: a model's mean and CI are bootstrap_mean's with the config's n_boot and seed.
    models = pd.read_csv(res / "models.csv").set_index(["model", "metric"])
    tested = sorted(set(samples.model) - {m for m in samples.model if m.endswith("-random-init")})
    values = samples[(samples.model == tested[0]) & (samples.metric == "imacs_g")]["value"].to_numpy(float)
    cell = models.loc[(tested[0], "imacs_g")]
    ours, default = bootstrap_mean(values, settings), bootstrap_mean(values, Resampling())
    assert (cell.ci_low, cell.ci_high) == pytest.approx((ours.ci_low, ours.ci_high), rel=1e-5, abs=1e-6)
    assert (cell.ci_low, cell.ci_high) != pytest.approx((default.ci_low, default.ci_high), rel=1e-5, abs=1e-6)

    # Correlations: every interval and p-value is within_between's with those settings.
    frame = pd.read_csv(res / "correlations.csv")
    quality = list(dict.fromkeys(frame.y))
    direct = within_between(samples[samples.model.isin(tested)], IMACS_SCORES, quality, METHODS,
                            resampling=settings)
    assert len(frame) == len(direct) and (frame.ci_method != "none").any()
    for column in ("statistic", "p_value", "ci_low", "ci_high"):
        np.testing.assert_allclose(frame[column].to_numpy(float), direct[column].to_numpy(float), rtol=1e-5,
                                   atol=1e-6)
    other = within_between(samples[samples.model.isin(tested)], IMACS_SCORES, quality, METHODS)
    assert not np.allclose(frame.ci_low.to_numpy(float), other.ci_low.to_numpy(float), rtol=1e-5, atol=1e-6,
                           equal_nan=True)

    # The sweep splits the samples with the config's seed.
    assert set(pd.read_csv(res / "sweep.csv").split_seed) == {SEED}
