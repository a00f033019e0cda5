"""A short training run lowers the loss; the shipped mini models load and generate."""

import dataclasses

import pytest
import torch

from benchmark.adapters.reference_unet import ReferenceUNetAdapter
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.training.embedded import EMBEDDED_TASKS, VAES
from benchmark.training.train import TrainPlan, _state_path, load_split, train_task, train_vae


def test_short_training_run_lowers_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    task = dataclasses.replace(EMBEDDED_TASKS["object_inpainting"], n_train=64, n_test=4, output_root=tmp_path / "out")
    plan = TrainPlan(vae_steps=10, steps=80, cls_steps=10, batch_size=16, lr=1e-3, checkpoint_every=40)
    vae = train_vae(plan, VAES[task.vae], tmp_path / "vae", tasks=[task]).eval().requires_grad_(False)
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
                                             {"vae": str(task.vae_dir)}))
    batch = collate(load_split(task, "test")[:2])
    out = adapter.generate(batch, SamplingSettings(2, 3.0), seeds=[1, 2])
    assert out.shape == batch["target"].shape
    assert 0 <= out.min() and out.max() <= 1 and out.flatten(1).std(1).min() > 0.01


def test_short_dit_run_lowers_the_loss_and_the_export_generates_with_capture(tmp_path, monkeypatch):
    from benchmark.adapters.reference_dit import ReferenceDiTAdapter
    from benchmark.capture.joint_capture import OutputSpaceAccumulator
    from benchmark.generation import CaptureSettings, generate_with_capture
    from benchmark.training.train import train_dit

    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    task = dataclasses.replace(EMBEDDED_TASKS["object_inpainting"], n_train=64, n_test=4, output_root=tmp_path / "out")
    plan = TrainPlan(vae_steps=10, dit_steps=60, batch_size=16, lr=1e-3, checkpoint_every=30)
    vae = train_vae(plan, VAES[task.vae], tmp_path / "vae", tasks=[task]).eval().requires_grad_(False)
    train_dit(task, plan, vae)
    losses = torch.load(_state_path(f"{task.name}-dit", plan, task, vae.config.scaling_factor), weights_only=False)["losses"]
    assert len(losses) == 60
    assert sum(losses[-15:]) / 15 < 0.8 * sum(losses[:15]) / 15

    adapter = ReferenceDiTAdapter(ModelSpec("dit", "reference_dit", str(task.models_dir / "dit"), {"vae": str(tmp_path / "vae")}))
    batch = collate(load_split(task, "test")[:2])
    sampling = SamplingSettings(3, 3.0)
    plain = adapter.generate(batch, sampling, seeds=[1, 2])
    concept = OutputSpaceAccumulator(num_steps=3)
    images, acc = generate_with_capture(adapter, batch, sampling, 0, CaptureSettings(levels=("ulam",), time_groups=1),
                                        concept=concept)
    seeds_plain = adapter.generate(batch, sampling, seeds=[1, 2])
    assert torch.equal(plain, seeds_plain) and plain.shape == batch["target"].shape
    again, _ = generate_with_capture(adapter, batch, sampling, 0, CaptureSettings(enabled=False))
    assert (images - again).abs().max() < 1e-5  # capture leaves the image unchanged
    g, r = acc.generated_maps()["ulam"], acc.reference_maps()["ulam"]
    assert g.shape == (2, 12, 12) and r.shape == (2, 12, 12)
    assert torch.isfinite(g).all() and g.flatten(1).std(1).min() > 0
    assert concept.volume.shape == (2, 144, 144) and concept.calls == 3 * 4  # 3 steps x 4 attention layers


def test_shipped_dit_loads_and_generates():
    from benchmark.adapters.reference_dit import ReferenceDiTAdapter

    task = EMBEDDED_TASKS["object_inpainting"]
    folder = task.models_dir / "dit"
    assert (folder / "transformer" / "config.json").is_file(), f"shipped model missing: {folder}"
    adapter = ReferenceDiTAdapter(ModelSpec("dit", "reference_dit", str(folder), {"vae": str(task.vae_dir)}))
    batch = collate(load_split(task, "test")[:2])
    out = adapter.generate(batch, SamplingSettings(2, 3.0), seeds=[1, 2])
    assert out.shape == batch["target"].shape
    assert 0 <= out.min() and out.max() <= 1 and out.flatten(1).std(1).min() > 0.01
