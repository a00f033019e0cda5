"""Config checks a new user hits: scoring cells off the sweep grid, devices, adapter targets, task metrics, task
names. Each is either working or one ConfigError that says what and where."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from benchmark.analysis.resampling import Resampling
from benchmark.analysis.sweep import SweepData, SweepGrid, correlation_sweep
from benchmark.config import REPO_ROOT, ConfigError, RunConfig, TaskConfig, check_config, check_device
from benchmark.registry import ADAPTERS, Entry


def _cfg(task="tasks/object_inpainting", adapter="reference_unet", **over):
    return {"name": "x", "tasks": [{"task": task, "models": [{"name": "m", "adapter": adapter, "path": "nowhere"}]}],
            **over}


def test_configured_cell_joins_the_sweep_grid_and_the_sweep_runs():
    s = RunConfig.from_dict(_cfg(scoring={"lambda": 4.0, "threshold": 0.45})).scoring
    assert s.swept_lambdas == [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert s.swept_thresholds == [0.0, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6]
    assert RunConfig.from_dict(_cfg()).scoring.swept_lambdas == [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]  # no duplicate
    rng = np.random.default_rng(0)
    n, t = 24, len(s.swept_thresholds)
    a, b, quality = rng.random((n, t)), rng.random((n, t)), rng.random(n)
    frame = correlation_sweep(SweepData(a, b, quality, np.repeat(["m1", "m2"], n // 2)),
                              SweepGrid(s.swept_lambdas, s.swept_thresholds, default=(s.lam, s.threshold)),
                              resampling=Resampling(n_boot=50, n_permutations=99))
    default = frame[frame["default"]]
    assert default[["lambda", "threshold"]].values.tolist() == [[4.0, 0.45]]


@pytest.mark.parametrize("scoring, message", [
    ({"lambda": -1.0}, r"scoring: lambdas must be >= 0, got \[-1.0\]"),
    ({"sweep_lambdas": [0.0, -0.5]}, r"scoring: lambdas must be >= 0, got \[-0.5\]"),
    ({"threshold": 0.33}, r"scoring: thresholds \[0.33\] are not on the stored grid"),
    ({"sweep_thresholds": [0.2, 0.27]}, r"scoring: thresholds \[0.27\] are not on the stored grid"),
    ({"lambda": "high"}, r"scoring.lambda: expected finite numbers, got \['high'\]"),
])
def test_bad_scoring_is_a_config_error(scoring, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(_cfg(scoring=scoring))


def test_missing_gpu_and_malformed_device_are_config_errors():
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0  # 0 on a CPU-only machine: cuda:0
    with pytest.raises(ConfigError, match=rf"device 'cuda:{count}': this machine has {count} CUDA GPU"):
        check_device(f"cuda:{count}")
    with pytest.raises(ConfigError, match=r"config.device: 'cud' is not a device.*did you mean 'cuda'"):
        RunConfig.from_dict(_cfg(device="cud"))
    with pytest.raises(ConfigError, match=r"--device: 'cuda0' is not a device"):
        RunConfig.from_dict(_cfg()).select(device="cuda0")


def test_cpu_auto_and_registered_targets_pass_without_importing_model_libraries():
    code = ("import json, sys\n"
            "from benchmark.config import RunConfig, check_config, check_device, check_target\n"
            "from benchmark.registry import ADAPTERS, DATASET_FORMATS, METHODS, SAMPLE_METRICS, SET_METRICS\n"
            "check_device('cpu'); check_device('auto')\n"
            "for name in ('embedded_default', 'nightly'):\n"
            "    check_config(RunConfig.load(f'configs/{name}.yaml'))\n"
            "for reg in (ADAPTERS, DATASET_FORMATS, SAMPLE_METRICS, SET_METRICS, METHODS):\n"
            "    for e in reg.entries():\n"
            "        check_target(e.target, e.name)\n"
            "print(json.dumps([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("target, message", [
    ("benchmark.adapters.reference_unet:ReferenceUNetAdaptr",
     r"model 'm' \(adapter 'tmp_bad'\): target .*defines no 'ReferenceUNetAdaptr'; "
     r"did you mean 'ReferenceUNetAdapter'"),
    ("benchmark.adapters.no_such_module:Adapter", r"no module 'benchmark.adapters.no_such_module'"),
    ("benchmark.registry:ADAPTRS", r"benchmark.registry defines no 'ADAPTRS'; did you mean 'ADAPTERS'"),  # imported
])
def test_adapter_target_that_does_not_resolve_is_a_config_error(monkeypatch, target, message):
    monkeypatch.setitem(ADAPTERS._entries, "tmp_bad", Entry("tmp_bad", target))
    cfg = RunConfig.from_dict(_cfg(adapter="tmp_bad"))
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


@pytest.mark.parametrize("metric, message", [
    ({"name": "maskd_l1", "direction": "lower"}, r"unknown metric 'maskd_l1'"),
    ({"name": "maskd_psnr", "direction": "higher"}, r"unknown metric 'maskd_psnr'; did you mean 'masked_psnr'"),
    ({"name": "lpips", "direction": "higher"}, r"metric 'lpips' is registered with direction 'lower', got 'higher'"),
])
def test_task_metric_unknown_or_wrong_direction_is_a_config_error(tmp_path, metric, message):
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"base": str(REPO_ROOT / "tasks/object_inpainting/task.yaml"), "name": "t",
                                    "metrics": [metric]}))
    with pytest.raises(ConfigError, match=message) as err:
        TaskConfig.load(task)
    assert str(err.value).startswith(f"{task}.metrics[0]: ")


def test_shipped_task_files_pass_the_metric_check():
    files = sorted((REPO_ROOT / "tasks").glob("*/*.yaml")) + sorted((REPO_ROOT / "configs/real_tasks").glob("*.yaml"))
    assert len(files) >= 8 and all(TaskConfig.load(p).metrics for p in files)


def test_task_given_by_name_resolves_to_its_path():
    by_name, by_path = RunConfig.from_dict(_cfg("object_inpainting")), RunConfig.from_dict(_cfg())
    assert by_name == by_path and by_name.tasks[0].task == "tasks/object_inpainting"
    assert RunConfig.from_dict(_cfg("viton_hd_unpaired")).tasks[0].task == "tasks/viton_hd/unpaired.yaml"
    unknown = r"tasks\[0\]\.task: 'object_inpaint' is neither.*did you mean 'object_inpainting'"
    with pytest.raises(ConfigError, match=unknown):
        RunConfig.from_dict(_cfg("object_inpaint"))
