"""Models that generate the latent residual over a condition (super-resolution): sampling adds it back."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import DDIMScheduler

from benchmark.models.mini import I2IModelSpec, build_image_encoder, build_unet, build_vae
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline, encode_image

CONDITIONS = (("mask", "mask"), ("lr_up", "image"))


def _pipe(spec: I2IModelSpec) -> ReferenceI2IPipeline:
    torch.manual_seed(0)
    return ReferenceI2IPipeline(build_vae(4, downsample=2).eval(), build_unet(5, cross_attention_dim=32).eval(),
                                build_image_encoder(image_size=16, hidden_size=32).eval(),
                                DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              clip_sample=False, set_alpha_to_one=False), spec)


def test_condition_slice_and_validation():
    spec = I2IModelSpec(CONDITIONS)
    assert spec.condition_slice("mask") == slice(0, 1) and spec.condition_slice("lr_up", 4) == slice(1, 5)
    with pytest.raises(KeyError, match="pose"):
        spec.condition_slice("pose")
    with pytest.raises(ValueError, match="image condition"):
        I2IModelSpec(CONDITIONS, residual_of="mask")


def test_residual_model_decodes_its_sample_rescaled_plus_the_condition_latent():
    plain_spec = I2IModelSpec(CONDITIONS, num_inference_steps=3)
    residual_spec = dataclasses.replace(plain_spec, residual_of="lr_up", residual_scale=2.5)
    g = torch.Generator().manual_seed(1)
    reference, lr_up = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    conditions = {"mask": torch.ones(2, 1, 16, 16), "lr_up": lr_up}
    decoded = {}
    for name, spec in (("plain", plain_spec), ("residual", residual_spec)):
        pipe = _pipe(spec)
        pipe.decode = lambda z, name=name: decoded.setdefault(name, z.clone())
        with torch.no_grad():
            pipe(reference, conditions, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z_cond = encode_image(_pipe(plain_spec).vae, lr_up)
    assert z_cond.shape == (2, 4, 8, 8)  # f=2
    torch.testing.assert_close(decoded["residual"], decoded["plain"] / 2.5 + z_cond, rtol=1e-5, atol=1e-5)
    assert (decoded["residual"] - decoded["plain"]).abs().max() > 0.1
