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
    assert cfg.scoring.lam == 2.0
    with pytest.raises(Exception):
        cfg.seed = 3  # frozen


def test_config_hash_ignores_cluster_layout_but_not_scoring():
    a = RunConfig.from_dict(_cfg())
    b = RunConfig.from_dict(_cfg(cluster={"workers": 2}, batch_size=3))
    c = RunConfig.from_dict(_cfg(scoring={"threshold": 0.3}))
    assert a.hash() == b.hash() != c.hash()


def test_task_variant_extends_base():
    t = TaskConfig.load("tasks/viton_hd/unpaired.yaml")
    assert t.dataset.pairing == "unpaired" and t.dataset.format == "viton_hd"
    assert [m.name for m in t.metrics] == ["fid", "kid"]


def test_shipped_configs_validate(capsys):
    assert main(["validate", "--config", "configs/embedded_default.yaml"]) == 0
    assert main(["validate", "--config", "configs/nightly.yaml"]) == 0
    assert "ok: nightly" in capsys.readouterr().out


def test_validate_rejects_bad_file(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntasks: [{task: tasks/viton_hd, models: [], max_sample: 3}]\n")
    assert main(["validate", "--config", str(p)]) == 2
    assert "max_sample" in capsys.readouterr().err


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
