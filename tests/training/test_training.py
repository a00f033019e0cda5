"""A short training run lowers the loss; the shipped mini models load and generate."""

import dataclasses

import pytest
import torch

from benchmark.adapters.reference_unet import ReferenceUNetAdapter
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.training.embedded import EMBEDDED_TASKS, SHARED_VAE_DIR
from benchmark.training.train import TrainPlan, _state_path, load_split, train_task, train_vae


def test_short_training_run_lowers_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    task = dataclasses.replace(EMBEDDED_TASKS["object_inpainting"], n_train=64, n_test=4, output_root=tmp_path / "out")
    plan = TrainPlan(vae_steps=10, steps=80, cls_steps=10, batch_size=16, lr=1e-3, checkpoint_every=40)
    vae = train_vae(plan, tmp_path / "vae", tasks=[task]).eval().requires_grad_(False)
    train_task(task, "patch", plan, vae)
    state = torch.load(_state_path(f"{task.name}-patch", plan, task, vae.config.scaling_factor), weights_only=False)
    losses = state["losses"]
    assert len(losses) == 80
    assert sum(losses[-20:]) / 20 < 0.7 * sum(losses[:20]) / 20
    assert (task.models_dir / "full" / "unet" / "config.json").is_file()
    assert (task.models_dir / "ckpt-10" / "unet").is_dir() and (task.models_dir / "ckpt-30" / "unet").is_dir()


@pytest.mark.parametrize("task_name", sorted(EMBEDDED_TASKS))
def test_shipped_models_load_and_generate(task_name):
    task = EMBEDDED_TASKS[task_name]
    for model in ("full", "ckpt-375", "ckpt-1125", "cls-only"):
        folder = task.models_dir / model
        assert (folder / "unet" / "config.json").is_file(), f"shipped model missing: {folder}"
    adapter = ReferenceUNetAdapter(ModelSpec("full", "reference_unet", str(task.models_dir / "full"),
                                             {"vae": str(SHARED_VAE_DIR)}))
    batch = collate(load_split(task, "test")[:2])
    out = adapter.generate(batch, SamplingSettings(2, 3.0), seeds=[1, 2])
    assert out.shape == batch["target"].shape
    assert 0 <= out.min() and out.max() <= 1 and out.flatten(1).std(1).min() > 0.01
