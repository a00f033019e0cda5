"""Regression alerts in the nightly scenario: one model name whose weights are replaced between real runs is compared
with its previous state, paired per sample. A near copy of the weights (what a nondeterministic rerun looks like)
is compared and not flagged; a clearly worse checkpoint of the same training run is flagged in IMACS_g and the
primary quality metric, and ``--fail-on-regression`` exits non-zero only then."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.cli import EXIT_REGRESSION, main
from benchmark.config import DEFAULT_MIN_EFFECT, REPO_ROOT, ConfigError, RunConfig
from benchmark.registry import SAMPLE_METRICS

from runner_helpers import cli_env, smoke_dict, write_config

# Trained mini models of one run: a tiny random model has no "worse" (a random model with another seed is as
# likely better as worse), a checkpoint from early in the same training run is worse in attribution and quality.
MODELS = REPO_ROOT / "tasks" / "viton_hd" / "models"
SAMPLES, STEPS = 10, 4


def _config(root, model) -> dict:
    spec = {"name": "tryon", "adapter": "reference_unet", "path": str(model), "options": {"vae": "tasks/_shared/vae"}}
    return smoke_dict(root, model, models=[spec], max_samples=SAMPLES, sampling={"num_inference_steps": STEPS},
                      batch_size=SAMPLES, shard_size=SAMPLES, label="", scoring={"n_boot": 200})


def _near_copy(src, dst, relative: float = 1e-6) -> None:
    """``src`` at ``dst`` with every UNet weight moved by seeded noise of ``relative`` size: new files (a new model
    hash), the same model. Saved in float32, the precision the adapter computes in (the shipped float16 files
    cannot hold so small a change)."""
    shutil.copytree(src, dst)
    path = dst / "unet" / "diffusion_pytorch_model.safetensors"
    gen = torch.Generator().manual_seed(0)
    weights = {k: w.float() for k, w in load_file(path).items()}
    save_file({k: w * (1 + relative * torch.randn(w.shape, generator=gen)) for k, w in weights.items()}, path,
              metadata={"format": "pt"})


def _run(config) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "benchmark", "run", "--config", str(config), "--scheduler", "inline",
            "--fail-on-regression"]
    return subprocess.run(argv, cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)


def _changes(results) -> pd.DataFrame:
    text = {c: str for c in ("flagged", "old_model_hash", "new_model_hash", "old_run", "new_run")}
    return pd.read_csv(results / "changes.csv", dtype=text).fillna({"flagged": ""}).set_index("metric")


def test_a_near_copy_is_not_flagged_and_a_worse_checkpoint_is(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(MODELS / "full", model)
    config = write_config(_config(tmp_path, model), tmp_path / "config.yaml")
    results, overview = tmp_path / "run" / "results", tmp_path / "leaderboards" / "README.md"

    assert main(["run", "--config", str(config), "--scheduler", "inline", "--fail-on-regression"]) == 0
    assert _changes(results).empty  # nothing earlier to compare with
    assert json.loads((results / "regressions.json").read_text()) == []
    assert "No comparison" in overview.read_text()

    shutil.rmtree(model)
    _near_copy(MODELS / "full", model)
    near = _run(config)
    assert near.returncode == 0, near.stderr[-3000:]
    changes = _changes(results)
    assert {"imacs_g", "imacs_r", "masked_psnr", "masked_ssim", "psnr", "ssim"} <= set(changes.index)
    assert (changes.n == SAMPLES).all() and (changes.flagged == "").all()
    assert (changes.old_model_hash != changes.new_model_hash).all()
    assert all(abs(r.delta) < DEFAULT_MIN_EFFECT[m] / 100 for m, r in changes.iterrows())
    # Consistent, so a CI alone would call it: the minimum effect is what keeps such noise out of the alerts.
    assert ((changes.ci_low > 0) | (changes.ci_high < 0)).any()
    assert json.loads((results / "regressions.json").read_text()) == []
    text = overview.read_text()
    assert text.index("## Since the last comparable run") < text.index("## Tasks") and "No significant change." in text

    shutil.rmtree(model)
    shutil.copytree(MODELS / "ckpt-375", model)  # same name and path: an early checkpoint of the same run
    worse = _run(config)
    assert worse.returncode == EXIT_REGRESSION, worse.stderr[-3000:]
    before, changes = changes, _changes(results)
    for metric in ("imacs_g", "masked_psnr"):  # masked PSNR: viton_hd's primary quality metric
        row = changes.loc[metric]
        assert row.flagged == "regression" and row.ci_high < 0 and row.delta <= -DEFAULT_MIN_EFFECT[metric], row
        assert (row.old_model_hash, row.old_run) == tuple(before.loc[metric, ["new_model_hash", "new_run"]])
        assert f"REGRESSION viton_hd/tryon {metric}:" in worse.stderr
    # IMACS_r is higher for the early checkpoint (as on the committed leaderboard): an improvement, not an alert.
    assert changes.loc["imacs_r", "flagged"] == "improvement"
    regressions = json.loads((results / "regressions.json").read_text())
    assert {"imacs_g", "masked_psnr"} <= {r["metric"] for r in regressions} and "imacs_r" not in str(regressions)
    assert "| **regression** | viton_hd | tryon | IMACS_g ↑ |" in overview.read_text()

    # Pages current: the flagged regressions are read back.
    assert main(["report", "--config", str(config)]) == 0
    assert main(["report", "--config", str(config), "--fail-on-regression"]) == EXIT_REGRESSION


def test_the_old_tolerance_key_is_an_error_that_names_its_replacement(tmp_path):
    with pytest.raises(ConfigError, match=r"regression_tolerance was replaced by .* scoring\.regression: \{alpha"):
        RunConfig.from_dict(smoke_dict(tmp_path, tmp_path, scoring={"regression_tolerance": 0.05}))


def test_min_effect_defaults_cover_every_compared_metric_and_entries_replace_them_one_by_one(tmp_path):
    quality = {e.name for e in SAMPLE_METRICS.entries() if e.info.get("kind") == "quality"}
    assert set(DEFAULT_MIN_EFFECT) == {"imacs_g", "imacs_r"} | quality
    cfg = RunConfig.from_dict(smoke_dict(tmp_path, tmp_path, scoring={"regression": {"min_effect": {"psnr": 1}}}))
    assert cfg.scoring.regression.min_effect == {**DEFAULT_MIN_EFFECT, "psnr": 1}
    assert cfg.scoring.regression.alpha == 0.05
    for bad, says in (({"min_effect": {"imacs": 0.1}}, "did you mean 'imacs_"),
                      ({"min_effect": {"psnr": -1}}, "expected a finite number >= 0"),
                      ({"alpha": 1.5}, r"expected a number in \(0, 1\)"), ({"alfa": 0.1}, "did you mean 'alpha'")):
        with pytest.raises(ConfigError, match=says):
            RunConfig.from_dict(smoke_dict(tmp_path, tmp_path, scoring={"regression": bad}))


def test_fail_on_regression_needs_the_report(tmp_path, capsys):
    config = write_config(smoke_dict(tmp_path, tmp_path), tmp_path / "config.yaml")
    assert main(["run", "--config", str(config), "--no-report", "--fail-on-regression"]) == 2
    assert "--fail-on-regression needs the report" in capsys.readouterr().err
