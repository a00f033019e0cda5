"""Run and task configs: typed, frozen, validated on load with errors that name the key."""

import dataclasses

import pytest

from benchmark.config import ConfigError, RunConfig, TaskConfig
from benchmark.cli import main


def _cfg(**over):
    base = {"name": "x", "tasks": [{"task": "tasks/object_inpainting",
                                    "models": [{"name": "m", "adapter": "reference_unet", "path": "nowhere"}]}]}
    base.update(over)
    return base


def test_bad_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'treshold'; did you mean 'threshold'"):
        RunConfig.from_dict(_cfg(scoring={"treshold": 0.3}))
    with pytest.raises(ConfigError, match=r"tasks\[0\]: unknown key 'modles'; did you mean 'models'"):
        RunConfig.from_dict({"name": "x", "tasks": [{"task": "tasks/viton_hd", "modles": []}]})


def test_unknown_adapter_is_reported_with_suggestion():
    bad = _cfg()
    bad["tasks"][0]["models"][0]["adapter"] = "reference_unt"
    with pytest.raises(ConfigError, match="did you mean 'reference_unet'"):
        RunConfig.from_dict(bad)


def test_lambda_alias_and_frozen():
    cfg = RunConfig.from_dict(_cfg(scoring={"lambda": 2.0}))
    assert cfg.scoring.lam == 2.0 and cfg.scoring.threshold == 0.4  # the alias sets lam only
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'seed'"):
        cfg.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'lam'"):
        cfg.scoring.lam = 3.0  # nested sections are frozen too


def _gen_key(**kw) -> str:
    cfg = RunConfig.from_dict(_cfg(**kw))
    return cfg.generation_key(cfg.tasks[0])


@pytest.mark.parametrize("other", [{"cluster": {"workers": 2}}, {"batch_size": 3}, {"shard_size": 5},
                                   {"output_dir": "elsewhere"}, {"leaderboard_dir": "lb2"}, {"label": "x"},
                                   {"scoring": {"threshold": 0.3}}, {"scoring": {"lambda": 2.0}},
                                   {"scoring": {"n_boot": 10}}, {"scoring": {"regression": {"alpha": 0.1}}},
                                   {"scoring": {"sweep_lambdas": [1.0]}}, {"metrics": {"weights_dir": "/w"}}])
def test_generation_key_ignores_what_does_not_change_the_outputs(other):
    assert _gen_key(**other) == _gen_key()


@pytest.mark.parametrize("outputs", [{"seed": 1}, {"capture": {"time_groups": 4}}, {"capture": {"levels": ["ulam"]}}])
def test_generation_key_changes_with_what_changes_the_outputs(outputs):
    assert _gen_key(**outputs) != _gen_key()


def test_sampling_override_changes_the_generation_key_of_its_task_only():
    cfg = RunConfig.from_dict(_cfg())
    other = RunConfig.from_dict({**_cfg(), "tasks": [{**_cfg()["tasks"][0], "sampling": {"num_inference_steps": 3}}]})
    assert other.generation_key(other.tasks[0]) != cfg.generation_key(cfg.tasks[0])


def test_scoring_key_changes_with_scoring_only():
    base = RunConfig.from_dict(_cfg()).scoring_key()
    assert RunConfig.from_dict(_cfg(scoring={"lambda": 2.0})).scoring_key() != base
    assert RunConfig.from_dict(_cfg(seed=3)).scoring_key() == base


def test_thresholds_off_the_stored_grid_are_rejected():
    with pytest.raises(ConfigError, match=r"thresholds \[0.33\] are not on the stored grid"):
        RunConfig.from_dict(_cfg(scoring={"threshold": 0.33}))


def test_task_variant_extends_base():
    t = TaskConfig.load("tasks/viton_hd/unpaired.yaml")
    assert t.dataset.pairing == "unpaired" and t.dataset.format == "viton_hd"
    assert [m.name for m in t.metrics] == ["fid", "kid"]


def test_shipped_configs_validate(capsys):
    assert main(["validate", "--config", "configs/embedded_default.yaml"]) == 0
    assert "ready to run" in capsys.readouterr().out
    # The nightly config parses, but its placeholder paths are reported, each with what was looked for.
    assert main(["validate", "--config", "configs/nightly.yaml"]) == 1
    out = capsys.readouterr()
    assert "config ok: nightly" in out.out
    assert "/path/to/zalando-hd-resized" in out.err and "hf download Fantasy-Studio/Paint-by-Example" in out.err


def test_validate_rejects_bad_file(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntasks: [{task: tasks/viton_hd, models: [], max_sample: 3}]\n")
    assert main(["validate", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: unknown key 'max_sample'; did you mean 'max_samples'? ({p}.tasks[0])\n"


def test_embedded_default_models_use_the_vae_their_task_was_trained_with():
    """A model decoded with another task's VAE would give plausible-looking garbage, not an error."""
    from pathlib import Path

    from benchmark.training.embedded import EMBEDDED_TASKS, REPO_ROOT

    cfg = RunConfig.load(REPO_ROOT / "configs" / "embedded_default.yaml")
    checked = 0
    for entry in cfg.tasks:
        task = EMBEDDED_TASKS[Path(entry.task).name]
        for model in entry.models:
            assert (REPO_ROOT / model.options["vae"]).resolve() == task.vae_dir.resolve(), (entry.task, model.name)
            checked += 1
    assert checked >= 15
