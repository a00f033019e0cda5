"""Loading and configuration errors of the adapters, and the ldm layer filter."""

from __future__ import annotations

from dataclasses import replace

import pytest

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.api.sources import ModelSourceError
from benchmark.config import ConfigError
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.registry import ADAPTERS

from adapter_tiny_models import CONDITIONS, build_generic_unet, build_ldm_unet, tiny_sample


def make(spec: ModelSpec):
    return ADAPTERS.get(spec.adapter)(spec, "cpu")


# --- paint_by_example -----------------------------------------------------------------------
def test_paint_by_example_missing_folder_says_where_to_put_it(tmp_path):
    missing = tmp_path / "models" / "paint-by-example"
    with pytest.raises(ModelSourceError) as err:
        make(ModelSpec("pbe", "paint_by_example", str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "model_index.json" in msg
    assert "`hf download Fantasy-Studio/Paint-by-Example --local-dir <folder>`" in msg


def test_paint_by_example_uncached_hub_id_is_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache") as err:
        make(ModelSpec("pbe", "paint_by_example", "someone/not-a-cached-pbe-model"))
    assert "'someone/not-a-cached-pbe-model'" in str(err.value)
    assert "`hf download someone/not-a-cached-pbe-model`" in str(err.value)
    assert not (tmp_path / "empty-cache" / "models--someone--not-a-cached-pbe-model").exists()


def test_paint_by_example_folder_without_model_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model_index.json"):
        make(ModelSpec("pbe", "paint_by_example", str(tmp_path)))


def test_paint_by_example_bad_option_names_the_close_key(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'guidance_scale'"):
        make(ModelSpec("pbe", "paint_by_example", str(tmp_path), {"guidance_scal": 3}))


# --- generic_unet ---------------------------------------------------------------------------
def test_generic_unet_missing_component_names_the_places(tmp_path):
    with pytest.raises(ModelSourceError, match=r"VAE \(AutoencoderKL folder from save_pretrained, looked for first at .*\) 'vae' not found") as err:
        make(ModelSpec("g", "generic_unet", str(tmp_path), {"conditions": CONDITIONS}))
    assert str(tmp_path / "vae") in str(err.value)


def test_generic_unet_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'token_grid'"):
        make(ModelSpec("g", "generic_unet", str(tmp_path), {"conditions": CONDITIONS, "token_gird": [4, 4]}))
    with pytest.raises(ConfigError, match="'conditions' is required"):
        make(ModelSpec("g", "generic_unet", str(tmp_path), {}))
    with pytest.raises(ConfigError, match="kind must be"):
        make(ModelSpec("g", "generic_unet", str(tmp_path), {"conditions": [["pose", "keypoints"]]}))


def test_generic_unet_token_grid_must_fit_the_encoder(tmp_path):
    spec = build_generic_unet(tmp_path)
    with pytest.raises(ConfigError, match="do not fit the image encoder"):
        make(replace(spec, options={**spec.options, "token_grid": [3, 3]}))
    with pytest.raises(ConfigError, match="UNet takes 9 input channels"):
        make(replace(spec, options={**spec.options, "conditions": [["masked_image", "image"]]}))


# --- ldm_unet -------------------------------------------------------------------------------
def test_ldm_unet_factory_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_i2am'"):
        make(ModelSpec("l", "ldm_unet", "x", {"factory": "no_such_module_i2am:build", "token_grid": [1, 1]}))
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        make(ModelSpec("l", "ldm_unet", "x", {"factory": "adapter_tiny_models:nope", "token_grid": [1, 1]}))
    with pytest.raises(ConfigError, match="'token_grid' is required"):
        make(ModelSpec("l", "ldm_unet", "x", {"factory": "adapter_tiny_models:build_tiny_ldm"}))
    spec = build_ldm_unet(tmp_path)
    with pytest.raises(ConfigError, match="matches no attention module") as err:
        make(replace(spec, options={**spec.options, "attention_filter": "warp_flow_blks"}))
    assert "diffusion_model.input_blocks.0.transformer_blocks.0.attn1" in str(err.value)


def test_ldm_unet_attention_filter_selects_layers(tmp_path):
    spec = build_ldm_unet(tmp_path)
    default = make(spec)
    assert default.attention_layers() == [f"diffusion_model.{b}.transformer_blocks.0.attn2"
                                          for b in ("input_blocks.0", "middle_block", "output_blocks.0")]
    adapter = make(replace(spec, options={**spec.options, "attention_filter": r"input_blocks\..*attn2$"}))
    batch = collate([tiny_sample(0), tiny_sample(1)])
    # guidance 1: no CFG, every attention row is conditional
    _, acc = generate_with_capture(adapter, batch, SamplingSettings(1, 1.0), 0, CaptureSettings(levels=("ulam",)))
    assert acc.layer_names == ["diffusion_model.input_blocks.0.transformer_blocks.0.attn2"]
    assert acc.generated_maps()["ulam"].flatten(1).std(1).min() > 0
