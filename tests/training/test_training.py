"""A short training run lowers the loss; the shipped mini models load and generate."""

import dataclasses
import json

import pytest
import torch

from benchmark.adapters.reference_unet import ReferenceUNetAdapter
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.training.embedded import DATA_VERSION, EMBEDDED_TASKS, VAES, ensure_data
from benchmark.training.train import TrainPlan, _state_path, load_split, train_task, train_vae


@pytest.mark.parametrize("task_name", ["object_inpainting", "super_resolution"])
def test_short_training_run_lowers_the_loss(task_name, tmp_path, monkeypatch):
    """Both VAE recipes (f=4 posterior samples; f=2 posterior mode, L1 + L2) and both UNet layouts train."""
    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    task = dataclasses.replace(EMBEDDED_TASKS[task_name], n_train=64, n_test=4, output_root=tmp_path / "out")
    plan = TrainPlan(vae_steps=10, steps=80, cls_steps=10, ladder=(10, 30), batch_size=16, lr=1e-3, checkpoint_every=40)
    recipe = VAES[task.vae]
    vae = train_vae(plan, recipe, tmp_path / "vae", tasks=[task]).eval().requires_grad_(False)
    summary = json.loads((tmp_path / "vae" / "train_summary.json").read_text())
    assert (summary["downsample"], summary["objective"]) == (recipe.downsample, recipe.objective)
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 48, 48)).latent_dist.mode()
    assert z.shape == (1, recipe.latent_channels, 48 // recipe.downsample, 48 // recipe.downsample)
    train_task(task, "patch", plan, vae)
    state = torch.load(_state_path(f"{task.name}-patch", plan, task, vae.config.scaling_factor), weights_only=False)
    losses = state["losses"]
    assert len(losses) == 80
    assert sum(losses[-20:]) / 20 < 0.7 * sum(losses[:20]) / 20
    assert (task.models_dir / "full" / "unet" / "config.json").is_file()
    assert (task.models_dir / "ckpt-10" / "unet").is_dir() and (task.models_dir / "ckpt-30" / "unet").is_dir()
    unet_config = json.loads((task.models_dir / "full" / "unet" / "config.json").read_text())
    assert unet_config["down_block_types"][0] == ("CrossAttnDownBlock2D" if task.attention_at_full_resolution
                                                  else "DownBlock2D")


def test_unet_without_full_resolution_attention_keeps_four_cross_attention_layers():
    from benchmark.models.mini import build_unet

    def cross(unet):
        return sum(name.endswith("attn2") for name, _ in unet.named_modules())

    assert cross(build_unet(4)) == 7
    slim = build_unet(4, attention_at_full_resolution=False)
    assert cross(slim) == 4
    out = slim(torch.randn(2, 8, 24, 24), torch.tensor([10, 500]), encoder_hidden_states=torch.randn(2, 5, 64)).sample
    assert out.shape == (2, 4, 24, 24)


def _files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_options_get_their_own_data_root(tmp_path, monkeypatch):
    """Each cached root holds exactly what the generator writes when called directly with the same
    seed, sizes and options, and a marker that records them."""
    from benchmark.procedural import generate_cufed5

    monkeypatch.setenv("I2AM_CACHE_DIR", str(tmp_path / "cache"))
    plain = ensure_data("cufed5", 1, 1, 0)
    coarse = ensure_data("cufed5", 1, 1, 0, texture_scale=2)
    assert plain.name == f"cufed5-v{DATA_VERSION}-s0-1-1"
    assert coarse.name == f"cufed5-v{DATA_VERSION}-texture_scale2-s0-1-1"
    assert json.loads((plain / "COMPLETE.json").read_text()) == {"generator": "cufed5", "seed": 0, "n_train": 1,
                                                                  "n_test": 1}
    assert json.loads((coarse / "COMPLETE.json").read_text()) == {"generator": "cufed5", "seed": 0, "n_train": 1,
                                                                   "n_test": 1, "texture_scale": 2}
    direct_plain = _files(generate_cufed5(tmp_path / "plain", n_train=1, n_test=1, seed=0))
    direct_coarse = _files(generate_cufed5(tmp_path / "coarse", n_train=1, n_test=1, seed=0, texture_scale=2))
    assert {k: v for k, v in _files(plain).items() if k != "COMPLETE.json"} == direct_plain
    assert {k: v for k, v in _files(coarse).items() if k != "COMPLETE.json"} == direct_coarse
    assert direct_plain["test/CUFED5/001_0.png"] != direct_coarse["test/CUFED5/001_0.png"]  # the option is used


def test_shared_vae_recipe_keeps_the_data_it_was_trained_on():
    """The shipped shared VAE learnt the finest CUFED5 textures (scale 1, levels 1-3) beside the two inpainting
    tasks; the super-resolution task itself moved to coarser textures and its own f=2 VAE."""
    shared = VAES["vae"]
    assert [t.generator for t in shared.data] == ["viton_hd", "cocoee", "cufed5"]
    assert shared.data[2].generator_options == () and shared.data[2].train_levels == (1, 2, 3)
    assert EMBEDDED_TASKS["super_resolution"].vae == "vae_sr" and VAES["vae_sr"].downsample == 2


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
    from benchmark.run.generation import CaptureSettings, generate_with_capture
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


def test_vae_recipe_rejects_an_unknown_objective():
    from benchmark.training.embedded import VAERecipe

    with pytest.raises(ValueError, match="objective must be one of"):
        VAERecipe("x", latent_channels=4, steps=1, lr=1e-3, data=(), objective="l2-sample")
