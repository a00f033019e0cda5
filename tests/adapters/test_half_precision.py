"""The model option ``dtype``: validated at config load, honoured by every adapter, and maps of a bfloat16 run
that stay close to the float32 run on the same inputs and seed, the capture accumulating in float32."""

from __future__ import annotations

import pytest
import torch

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.adapters.pipeline_adapter import model_dtype
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.capture.attention import captured_probabilities
from benchmark.config import ConfigError, RunConfig
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.scoring.imacs import imacs
from benchmark.scoring.maps import minmax
from benchmark.registry import ADAPTERS

from adapter_tiny_models import BUILDERS, build_ldm_unet, build_tiny_ldm, tiny_sample

SAMPLING = SamplingSettings(num_inference_steps=4, guidance_scale=3.0)
SEED = 7
# bfloat16 keeps 8 significant bits (relative rounding 2^-9); over a few steps of a tiny random model the
# normalised maps (in [0, 1]) move by at most ~0.04 (measured: 0.03 UNet, 0.04 DiT) and IMACS_g by ~0.012.
MAP_TOLERANCE = 0.1
IMACS_TOLERANCE = 0.05


def with_dtype(spec: ModelSpec, dtype: str) -> ModelSpec:
    return ModelSpec(spec.name, spec.adapter, spec.path, {**spec.options, "dtype": dtype})


# --- the option ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["float64", "fp16", "half", 16])
def test_unsupported_dtype_is_a_config_error_at_load(bad):
    cfg = {"name": "x", "tasks": [{"task": "tasks/object_inpainting", "models": [
        {"name": "m16", "adapter": "reference_unet", "path": "nowhere", "options": {"dtype": bad}}]}]}
    with pytest.raises(ConfigError, match=r"model 'm16': option dtype .* is not one of "
                                          r"\['auto', 'float32', 'float16', 'bfloat16'\]"):
        RunConfig.from_dict(cfg)


def test_auto_is_float16_on_cuda_and_float32_elsewhere():
    assert model_dtype("auto", "cuda", "m") == torch.float16
    assert model_dtype("auto", "cpu", "m") == torch.float32
    assert model_dtype("bfloat16", "cpu", "m") == torch.bfloat16


@pytest.mark.parametrize("adapter", ["reference_unet", "reference_dit", "generic_unet", "paint_by_example",
                                     "flux_kontext"])
def test_every_part_is_loaded_in_the_dtype(adapter, tmp_path):
    spec = with_dtype(BUILDERS[adapter](tmp_path), "bfloat16")
    model = ADAPTERS.get(adapter)(spec, "cpu")
    parts = [model.capture_module(), model.pipe.vae] + [getattr(model.pipe, "image_encoder", None)]
    for part in filter(None, parts):
        assert {p.dtype for p in part.parameters()} == {torch.bfloat16}, type(part).__name__


def test_adapter_rejects_an_unsupported_dtype_too(tmp_path):
    spec = with_dtype(BUILDERS["reference_dit"](tmp_path), "float64")
    with pytest.raises(ConfigError, match=r"model 'tiny-dit': option dtype 'float64' is not one of"):
        ADAPTERS.get("reference_dit")(spec, "cpu")


def build_tiny_ldm_in(path: str, device="cpu", dtype=torch.float32, context_dim: int = 12):
    """Factory 'test_half_precision:build_tiny_ldm_in': the tiny ldm model built in ``dtype``."""
    sampler = build_tiny_ldm(path, device, context_dim)
    sampler.model.to(dtype)
    return sampler


def build_tiny_ldm_ignoring_dtype(path: str, device="cpu", **kwargs):
    """Factory 'test_half_precision:build_tiny_ldm_ignoring_dtype': takes a dtype and ignores it."""
    return build_tiny_ldm(path, device, kwargs["context_dim"])


def ldm_spec(folder, factory: str | None, dtype: str) -> ModelSpec:
    spec = with_dtype(build_ldm_unet(folder), dtype)
    return spec if factory is None else ModelSpec(spec.name, spec.adapter, spec.path,
                                                  {**spec.options, "factory": f"test_half_precision:{factory}"})


def test_ldm_factory_gets_the_dtype(tmp_path):
    model = ADAPTERS.get("ldm_unet")(ldm_spec(tmp_path, "build_tiny_ldm_in", "bfloat16"), "cpu")
    assert {p.dtype for p in model.capture_module().parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("factory, error", [
    (None, r"dtype 'bfloat16' cannot be honoured: factory .* has no dtype parameter"),
    ("build_tiny_ldm_ignoring_dtype", r"dtype 'bfloat16' \(torch.bfloat16\) was passed to factory .* but its model "
                                      r"has parameters in \['torch.float32'\]"),
])
def test_ldm_factory_that_cannot_honour_the_dtype_is_an_error(tmp_path, factory, error):
    with pytest.raises(ConfigError, match=error):
        ADAPTERS.get("ldm_unet")(ldm_spec(tmp_path, factory, "bfloat16"), "cpu")


# --- the capture --------------------------------------------------------------------------------
def test_probabilities_of_half_precision_queries_are_computed_in_float32():
    q, k = torch.randn(2, 3, 20, 8).bfloat16(), torch.randn(2, 3, 6, 8).bfloat16()
    probs, lse = captured_probabilities(q, k, 8 ** -0.5)
    scores = (q.double() @ k.double().transpose(-1, -2)) * 8 ** -0.5
    assert probs.dtype == lse.dtype == torch.float32
    torch.testing.assert_close(probs.double(), scores.softmax(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(lse.double(), scores.logsumexp(-1), atol=1e-5, rtol=0)


# --- bfloat16 against float32 -------------------------------------------------------------------
@pytest.mark.parametrize("adapter", ["reference_unet", "reference_dit"])
def test_bfloat16_maps_and_imacs_stay_close_to_float32(adapter, tmp_path):
    spec = BUILDERS[adapter](tmp_path)
    batch = collate([tiny_sample(0), tiny_sample(1)])
    runs = {}
    for dtype in ("float32", "bfloat16"):
        model = ADAPTERS.get(adapter)(with_dtype(spec, dtype), "cpu")
        images, acc = generate_with_capture(model, batch, SAMPLING, SEED, CaptureSettings())
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
        for state in (acc.g, acc.r, acc.rm, acc.sr):
            assert all(t.dtype == torch.float32 for t in state.values())
        volume = acc.reference_volume()  # (B, h*w, K): SRAM of every generated position
        runs[dtype] = {"generated": acc.generated_maps(),
                       "reference": {**acc.reference_maps(), "sram": volume.view(*volume.shape[:2], *acc.tokens.grid)}}
    full, half = runs["float32"], runs["bfloat16"]
    for side in ("generated", "reference"):
        for level, m in full[side].items():
            err = (minmax(half[side][level]) - minmax(m)).abs().max().item()
            assert err < MAP_TOLERANCE, f"{side} {level}: max abs error {err:.4f}"
    for i, mask in enumerate(batch["region_mask"]):
        a, b = imacs(full["generated"]["ulam"][i], mask), imacs(half["generated"]["ulam"][i], mask)
        assert abs(a.value - b.value) < IMACS_TOLERANCE


# --- decode inside diffusers' pipelines ----------------------------------------------------------
@pytest.mark.parametrize("adapter", ["paint_by_example", "flux_kontext"])
def test_pipelines_that_decode_themselves_decode_in_float32_under_force_upcast(adapter, tmp_path):
    """Paint-by-Example and FLUX Kontext decode inside diffusers' ``__call__``: a bfloat16 VAE with
    ``force_upcast`` decodes in float32 there too, and is back in bfloat16 afterwards."""
    model = ADAPTERS.get(adapter)(with_dtype(BUILDERS[adapter](tmp_path), "bfloat16"), "cpu")
    vae = model.pipe.vae
    assert vae.config.force_upcast and vae.dtype == torch.bfloat16
    seen = []
    hook = vae.decoder.register_forward_pre_hook(lambda m, args: seen.append((args[0].dtype, m.conv_in.weight.dtype)))
    try:
        images = model.generate(collate([tiny_sample(0)]), SamplingSettings(num_inference_steps=1, guidance_scale=3.0), [SEED])
    finally:
        hook.remove()
    assert seen == [(torch.float32, torch.float32)]
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16} and torch.isfinite(images).all()
