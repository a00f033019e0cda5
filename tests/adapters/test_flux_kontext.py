"""flux_kontext on a tiny random FLUX Kontext folder: joint layout, capture, batching, both modes, errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.api.model import ModelSpec, SamplingSettings, initial_noise
from benchmark.api.sample import I2ISample, collate
from benchmark.capture import I2AMAccumulator
from benchmark.capture.joint_capture import OutputSpaceAccumulator
from benchmark.config import ConfigError
from benchmark.run.generation import CaptureSettings, generate_with_capture, sample_seed
from benchmark.run.jobs import load_adapter

from adapter_tiny_models import build_flux_kontext

SIZE = 32  # generated size; f = 4 VAE -> 8x8 latent -> 4x4 packed tokens
TASK_REFERENCE = (24, 40)  # the task's reference size ...
REFERENCE_SIZE = (16, 32)  # ... resized by the adapter to this: 2x4 packed tokens
SAMPLING = SamplingSettings(num_inference_steps=2, guidance_scale=3.5)
SEED = 11
N_LAYERS = 2  # one double-stream and one single-stream block


def sample(i: int, mode: str, size: int = SIZE) -> I2ISample:
    g = torch.Generator().manual_seed(100 + i)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, TASK_REFERENCE[0]), torch.linspace(0, 1, TASK_REFERENCE[1]),
                            indexing="ij")
    reference = (torch.stack([xx, yy, xx * yy]) * 0.7 + 0.3 * torch.rand(3, *TASK_REFERENCE, generator=g))
    target = torch.rand(3, size, size, generator=g)
    box = torch.zeros(1, size, size)
    box[:, 8:24 + 4 * i, 4 + 4 * i:20] = 1
    if mode == "inpaint":
        conditions = {"masked_image": target * (1 - box) + 0.5 * box, "mask": box}
    else:  # e.g. super-resolution: a condition plain Kontext does not use
        conditions = {"lr_up": torch.rand(3, size, size, generator=g)}
    return I2ISample(f"k{i}", reference, conditions, target=target, region_mask=box)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flux_kontext")
    build_flux_kontext(folder)
    return folder


def spec(folder, **options) -> ModelSpec:
    options = {"prompt_embeds": str(folder / "prompt_embeds.safetensors"), "reference_size": list(REFERENCE_SIZE),
               **options}
    return ModelSpec("tiny-flux-kontext", "flux_kontext", str(folder), options)


@pytest.fixture(scope="module")
def adapter(folder):
    return load_adapter(spec(folder), torch.device("cpu"))


@dataclass
class Run:
    batch: dict
    images: torch.Tensor
    plain: torch.Tensor
    acc: I2AMAccumulator
    concept: OutputSpaceAccumulator
    seen: list  # what the transformer received, call by call


@pytest.fixture(scope="module", params=["inpaint", "plain"])
def run(request, adapter) -> Run:
    batch = collate([sample(0, request.param), sample(1, request.param)])
    seen = []

    def record(module, args, kwargs):
        seen.append({k: kwargs[k].detach().clone() for k in ("hidden_states", "encoder_hidden_states", "img_ids",
                                                                  "guidance")})

    handle = adapter.capture_module().register_forward_pre_hook(record, with_kwargs=True)
    concept = OutputSpaceAccumulator(SAMPLING.num_inference_steps)
    try:
        images, acc = generate_with_capture(adapter, batch, SAMPLING, SEED, CaptureSettings(), concept=concept)
    finally:
        handle.remove()
    plain = adapter.generate(batch, SAMPLING, [sample_seed(SEED, s) for s in batch["sample_id"]])
    return Run(batch, images, plain, acc, concept, seen)


# --- (a), (e): output, both modes ---------------------------------------------------------------
def test_capture_leaves_output_unchanged(run):
    assert run.images.shape == (2, 3, SIZE, SIZE) and run.images.dtype == torch.float32
    assert torch.isfinite(run.images).all()
    assert run.images.min() >= 0 and run.images.max() <= 1 and run.images.std() > 0
    assert (run.images - run.plain).abs().max().item() < 1e-5


# --- (b): the declared joint layout is the sequence the transformer sees ----------------------
def test_joint_layout_is_the_sequence_the_transformer_sees(run, adapter):
    layout = adapter.joint_layout(run.batch)
    assert (layout.generated, layout.reference) == (4 * 4, math.prod(REFERENCE_SIZE) // 64)
    assert len(run.seen) == SAMPLING.num_inference_steps  # one call per step: no true-CFG second pass
    for call in run.seen:
        n_text, n_image = call["encoder_hidden_states"].shape[1], call["hidden_states"].shape[1]
        assert call["hidden_states"].shape[0] == 2  # the batch, not doubled
        assert n_text == layout.text
        assert n_text + n_image == layout.text + layout.generated + layout.reference
        ids = call["img_ids"]
        gen_ids, ref_ids = ids[:layout.generated], ids[layout.generated:]
        assert (gen_ids[:, 0] == 0).all() and (ref_ids[:, 0] == 1).all()  # [generated; reference]
        assert tuple(int(gen_ids[:, d].max()) + 1 for d in (1, 2)) == adapter.latent_grid((SIZE, SIZE))
        assert tuple(int(ref_ids[:, d].max()) + 1 for d in (1, 2)) == adapter.token_layout.grid
        assert torch.allclose(call["guidance"], torch.full((2,), SAMPLING.guidance_scale))  # distilled guidance


def test_first_step_starts_from_the_per_sample_seed_noise(run, adapter):
    seeds = [sample_seed(SEED, s) for s in run.batch["sample_id"]]
    noise = initial_noise(seeds, (4, 8, 8))  # (B, C, H/f, W/f), packed by 2x2 patches as FLUX does
    packed = noise.view(2, 4, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, 16)
    first = run.seen[0]["hidden_states"][:, : adapter.joint_layout(run.batch).generated]
    assert torch.allclose(first, packed)


# --- (c): I2AM maps on the generated and reference grids ------------------------------------
def test_ulam_maps_have_the_declared_grids(run, adapter):
    gen, ref = run.acc.generated_maps()["ulam"], run.acc.reference_maps()["ulam"]
    assert adapter.latent_grid((SIZE, SIZE)) == (4, 4) and adapter.token_layout.grid == (2, 4)
    assert gen.shape == (2, 4, 4) and ref.shape == (2, 2, 4)
    for m in (gen, ref):
        assert torch.isfinite(m).all() and m.flatten(1).std(1).min() > 0
    assert len(run.acc.layer_names) == N_LAYERS
    for layer, calls in run.acc.calls.items():  # steps routed by the forwarded callback_on_step_end
        assert calls.tolist() == [1, 1], layer


# --- (g): the output-space (ConceptAttention) accumulator fills in the same pass -------------
def test_output_space_accumulator_fills(run, adapter):
    layout = adapter.joint_layout(run.batch)
    c = run.concept
    assert c.volume.shape == (2, layout.generated, layout.reference)
    assert c.calls == N_LAYERS * SAMPLING.num_inference_steps
    assert torch.allclose(c.volume.sum(-1), torch.full((2, layout.generated), float(c.calls)), atol=1e-4)
    ref_half = torch.zeros(2, layout.reference)
    ref_half[:, : layout.reference // 2] = 1
    gmap = c.generated_map(ref_half)
    assert torch.isfinite(gmap).all() and gmap.std(1).min() > 0


# --- (d): batching ------------------------------------------------------------------------
def test_output_does_not_depend_on_batching(run, adapter):
    mode = "inpaint" if "mask" in run.batch["conditions"] else "plain"
    alone, _ = generate_with_capture(adapter, collate([sample(1, mode)]), SAMPLING, SEED,
                                     CaptureSettings(enabled=False))
    assert (alone[0] - run.plain[1]).abs().max().item() < 1e-5


# --- inpainting specifics -------------------------------------------------------------------
def test_inpainting_keeps_the_known_region_and_never_reads_the_target(adapter):
    batch = collate([sample(0, "inpaint"), sample(1, "inpaint")])
    final = {}

    def last_latents(key):
        def cb(pipe, i, t, kwargs):
            final[key] = kwargs["latents"].clone()
            return kwargs
        return cb

    adapter.generate(batch, SAMPLING, [1, 2], callback_on_step_end=last_latents("a"))
    out_b = adapter.generate(batch, SAMPLING, [3, 4], callback_on_step_end=last_latents("b"))
    # the mask on the packed latent tokens: nearest-resized to the latent, then 2x2 packed like the latents
    pipe = adapter.inpaint_pipe
    mask = torch.nn.functional.interpolate(batch["conditions"]["mask"], size=(8, 8))
    packed = pipe._pack_latents(mask.repeat(1, 4, 1, 1), 2, 4, 8, 8)
    diff = (final["a"] - final["b"]).abs()
    assert diff[packed == 0].max() < 1e-6  # known region: the masked image's latents, whatever the noise
    assert (diff[packed == 1] > 1e-4).float().mean() > 0.9  # region to fill: depends on the noise
    poisoned = dict(batch, target=torch.full_like(batch["target"], float("nan")))
    assert torch.equal(adapter.generate(poisoned, SAMPLING, [3, 4]), out_b)


# --- errors and options ---------------------------------------------------------------------
def test_missing_prompt_names_both_options(folder):
    with pytest.raises(ConfigError, match="no prompt") as err:
        load_adapter(ModelSpec("p", "flux_kontext", str(folder), {"reference_size": [16, 32]}), torch.device("cpu"))
    assert "'prompt'" in str(err.value) and "'prompt_embeds'" in str(err.value)
    with pytest.raises(FileNotFoundError, match="text_encoder"):  # a prompt string needs the text encoders
        load_adapter(ModelSpec("p", "flux_kontext", str(folder), {"prompt": "a cat"}), torch.device("cpu"))


def test_sizes_that_do_not_pack_are_clear_errors(adapter, folder):
    with pytest.raises(ValueError, match="36x36 is not a multiple of 8"):
        generate_with_capture(adapter, collate([sample(0, "inpaint", size=36)]), SAMPLING, SEED)
    with pytest.raises(ConfigError, match="reference_size"):
        load_adapter(spec(folder, reference_size=[20, 32]), torch.device("cpu"))


def test_options_sampling_and_random_init(adapter, folder):
    assert adapter.default_sampling() == SamplingSettings(28, 2.5)
    custom = load_adapter(spec(folder, num_inference_steps=4, guidance_scale=4.0), torch.device("cpu"))
    assert custom.default_sampling() == SamplingSettings(4, 4.0)
    with pytest.raises(ConfigError, match="did you mean 'guidance_scale'"):
        load_adapter(spec(folder, guidance_scal=3), torch.device("cpu"))
    random_a = load_adapter(spec(folder, random_init=1), torch.device("cpu"))
    random_b = load_adapter(spec(folder, random_init=2), torch.device("cpu"))
    weights = {a.identity()["weights"] for a in (adapter, random_a, random_b)}
    assert len(weights) == 3  # fresh transformer weights, different per seed
    assert random_a.identity()["weights"][16:] == adapter.identity()["weights"][16:]  # VAE and prompt kept


def add_tiny_text_encoders(folder):
    """CLIP and T5 with 6-word vocabularies, so the option prompt can be encoded offline."""
    words = ["a", "red", "cat", "on", "the", "mat"]
    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{w + "</w>": i + 2 for i, w in enumerate(words)}}
    CLIPTokenizer(vocab=clip_vocab, merges=[], model_max_length=8).save_pretrained(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)).save_pretrained(folder / "text_encoder")
    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in words]
    T5TokenizerFast(vocab=t5_vocab, extra_ids=0).save_pretrained(folder / "tokenizer_2")
    T5EncoderModel(T5Config(vocab_size=len(t5_vocab), d_model=16, d_ff=16, d_kv=4, num_layers=1,
                            num_heads=2)).save_pretrained(folder / "text_encoder_2")


def test_prompt_is_encoded_with_the_folders_text_encoders(tmp_path):
    torch.manual_seed(0)
    build_flux_kontext(tmp_path)
    add_tiny_text_encoders(tmp_path)

    def make(prompt):
        options = {"prompt": prompt, "max_sequence_length": 6, "reference_size": list(REFERENCE_SIZE)}
        return load_adapter(ModelSpec("p", "flux_kontext", str(tmp_path), options), torch.device("cpu"))

    cat, mat = make("a red cat"), make("the mat")
    assert cat.prompt_embeds.shape == (1, 6, 16) and cat.pooled_prompt_embeds.shape == (1, 8)
    assert not torch.allclose(cat.prompt_embeds, mat.prompt_embeds)
    assert cat.identity()["weights"] != mat.identity()["weights"]  # the prompt is part of the result key
    batch = collate([sample(0, "plain")])
    assert cat.joint_layout(batch).text == 6
    images = cat.generate(batch, SAMPLING, [5])
    assert images.shape == (1, 3, SIZE, SIZE) and torch.isfinite(images).all()
