"""Non-finite outputs fail the job with a named reason; half-precision VAEs that ask for it decode in float32."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from benchmark.api.sample import I2ISample
from benchmark.run.jobs import job_dir, non_finite_outputs
from benchmark.pipelines.reference_i2i import ReferencePipelineBase, float32_decoder
from benchmark.results.sample_maps import SampleMaps
from benchmark.run.runner import execute, plan_jobs
from benchmark.store import FAILED, RESULT

from runner.runner_helpers import make_model, smoke_config


def test_non_finite_outputs_names_sample_and_output():
    chunk = [I2ISample(f"s{i}", torch.zeros(3, 4, 4), {}) for i in range(2)]
    images = torch.zeros(2, 3, 4, 4)
    images[1, 0, :2, :3] = float("nan")
    ulam = np.zeros((2, 2), np.float32)
    maps = [SampleMaps({"g/ulam": ulam, "mask/region": np.ones((4, 4), np.uint8)}),
            SampleMaps({"g/ulam": np.where(np.eye(2) > 0, np.inf, ulam).astype(np.float32)})]
    assert non_finite_outputs(images, maps, chunk, "generated image") == [
        "generated image of sample s1 has 6 non-finite values", "map g/ulam of sample s1 has 2 non-finite values"]
    assert non_finite_outputs(torch.zeros(2, 3, 4, 4), maps[:1] * 2, chunk, "generated image") == []


def test_nan_decode_fails_its_job_and_writes_no_image(tmp_path, monkeypatch):
    cfg = smoke_config(tmp_path, make_model(tmp_path / "model"))
    real, calls = ReferencePipelineBase.decode, []

    def decode(self, latents):  # the first batch decodes sample 1 to NaN, as an fp16 VAE overflow does
        images = real(self, latents)
        if not calls:
            images[1] = float("nan")
        calls.append(1)
        return images

    monkeypatch.setattr(ReferencePipelineBase, "decode", decode)
    summary = execute(cfg, scheduler="inline")
    assert len(summary.failed) == 1 and summary.finished == len(plan_jobs(cfg).jobs) - 1
    job = next(j for j in plan_jobs(cfg).jobs if j.key == summary.failed[0]["job"])
    reason = f"NonFiniteOutput: generated image of sample {job.sample_ids[1]} has "
    assert summary.failed[0]["error"].startswith(reason)
    assert json.loads((job_dir(cfg, job) / FAILED).read_text())["error"].startswith(reason)
    assert not (job_dir(cfg, job) / RESULT).exists()
    assert not list(job_dir(cfg, job).rglob("generated.png"))


def tiny_vae(force_upcast: bool) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), norm_num_groups=4, layers_per_block=1,
                         force_upcast=force_upcast)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_vae_with_force_upcast_decodes_in_float32_and_is_cast_back(half):
    vae = tiny_vae(True).to(half)
    z = torch.randn(1, 4, 4, 4)
    with float32_decoder(vae) as dtype:
        assert dtype == torch.float32 and vae.decoder.conv_in.weight.dtype == torch.float32
        out = vae.decode(z).sample
    assert {p.dtype for p in vae.parameters()} == {half}
    exact = tiny_vae(True).to(half).float().decode(z).sample  # the same half weights, in float32
    assert torch.equal(out, exact)


def test_vae_without_force_upcast_keeps_its_dtype():
    vae = tiny_vae(False).to(torch.bfloat16)
    with float32_decoder(vae) as dtype:
        assert dtype == torch.bfloat16 and vae.decoder.conv_in.weight.dtype == torch.bfloat16
    with float32_decoder(tiny_vae(True)) as dtype:
        assert dtype == torch.float32


def test_overflowing_float16_decode_is_finite_through_the_pipeline():
    vae = tiny_vae(True).half()
    latents = (torch.randn(1, 4, 4, 4) * 1e5 * vae.config.scaling_factor).half()  # float16 activations overflow
    assert not torch.isfinite(vae.decode(latents / vae.config.scaling_factor).sample).all()
    images = ReferencePipelineBase.decode(SimpleNamespace(vae=vae), latents)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
