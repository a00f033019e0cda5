"""One-pass attribution (:mod:`benchmark.run.one_pass`) on tiny random models.

The brute force is independent of the capture code: the model calls that
one-pass made are recorded at the model's entrance, replayed with the model's
own attention processors, the attention inputs (the query and key projections;
for joint attention the query, key and output at the attention kernel) are
hooked, and the maps are recomputed from them in float64 with literal loops
(``helpers.brute_force_maps``: softmax over the query axis for the generated
side, over the key axis for the reference side, as docs/maps.md
defines them).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.transformers import transformer_flux

sys.path.insert(0, str(Path(__file__).parent / "adapters"))  # the tiny-model builders and the ldm factories they name

import benchmark.adapters  # noqa: E402,F401  (registers the adapters)
from benchmark.adapters.joint_attention import JointAttentionCapture  # noqa: E402
from benchmark.api.model import (ModelAdapter, ModelSpec, OnePassUnsupported, SamplingSettings,  # noqa: E402
                                 one_pass_noise)
from benchmark.api.sample import collate  # noqa: E402
from benchmark.capture.joint_capture import OutputSpaceAccumulator  # noqa: E402
from benchmark.capture.tokens import TokenLayout  # noqa: E402
from benchmark.run.generation import CaptureSettings, generate_with_capture, sample_seed  # noqa: E402
from benchmark.models.mini import I2IModelSpec  # noqa: E402
from benchmark.run.one_pass import OnePassSettings, one_pass_with_capture  # noqa: E402
from benchmark.pipelines.reference_dit import pack  # noqa: E402
from benchmark.pipelines.reference_i2i import encode_image  # noqa: E402
from benchmark.registry import ADAPTERS  # noqa: E402
from benchmark.results.sample_maps import split_accumulator  # noqa: E402

from adapter_tiny_models import BUILDERS, build_ldm_unet_one_pass, build_reference_unet, tiny_sample  # noqa: E402
from helpers import brute_force_maps, tiny_unet  # noqa: E402

SETTINGS = OnePassSettings((250, 500, 750))
T = len(SETTINGS.timesteps)
SEED = 11
SRAM_POSITION = (1, 2)
SUPPORTED = {
    "reference_unet": BUILDERS["reference_unet"],
    "generic_unet": BUILDERS["generic_unet"],
    "paint_by_example": BUILDERS["paint_by_example"],
    "ldm_unet_one_pass": build_ldm_unet_one_pass,
    "reference_dit": BUILDERS["reference_dit"],
    "flux_kontext": BUILDERS["flux_kontext"],
}


def pair_batch() -> dict:
    return collate([tiny_sample(0), tiny_sample(1)])


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """load(name) -> the adapter on its tiny random model, built once per module."""
    cache: dict[str, ModelAdapter] = {}

    def get(name: str) -> ModelAdapter:
        if name not in cache:
            builder = SUPPORTED.get(name) or BUILDERS[name]
            spec = builder(tmp_path_factory.mktemp(name))
            cache[name] = ADAPTERS.get(spec.adapter)(spec, "cpu")
        return cache[name]

    return get


def model_of(adapter: ModelAdapter) -> torch.nn.Module:
    """The module every denoising call enters (the ldm wrapper's UNet is ``diffusion_model``)."""
    module = adapter.capture_module()
    return getattr(module, "diffusion_model", module)


def _clone(x):
    return x.detach().clone() if torch.is_tensor(x) else x


@dataclass
class Recorded:
    acc: object
    concept: OutputSpaceAccumulator | None
    calls: int
    inputs: list  # (args, kwargs) of every model call, in order


def record_one_pass(adapter: ModelAdapter, batch: dict, settings: OnePassSettings = SETTINGS) -> Recorded:
    """one_pass_with_capture, with every model call's inputs recorded at the model's entrance."""
    inputs = []

    def hook(module, args, kwargs):
        inputs.append((tuple(_clone(a) for a in args), {k: _clone(v) for k, v in kwargs.items()}))

    concept = adapter.concept_accumulator(len(settings.timesteps))
    handle = model_of(adapter).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        acc, calls = one_pass_with_capture(adapter, batch, settings, SEED, CaptureSettings(), concept=concept)
    finally:
        handle.remove()
    return Recorded(acc, concept, calls, inputs)


@dataclass
class Run:
    name: str
    adapter: ModelAdapter
    batch: dict
    rec: Recorded


@pytest.fixture(scope="module", params=sorted(SUPPORTED))
def run(request, load) -> Run:
    adapter, batch = load(request.param), pair_batch()
    return Run(request.param, adapter, batch, record_one_pass(adapter, batch))


# --- brute force ------------------------------------------------------------------------------------
def layer_grid_by_hand(n_queries: int, latent: tuple[int, int]) -> tuple[int, int]:
    for k in range(4):
        grid = (math.ceil(latent[0] / 2**k), math.ceil(latent[1] / 2**k))
        if grid[0] * grid[1] == n_queries:
            return grid
    raise AssertionError(f"{n_queries} queries fit no stride-2 grid of {latent}")


@torch.no_grad()
def replay_cross_attention(model: torch.nn.Module, inputs: list) -> list:
    """(layer, step, S, P) in float64 for every ``attn2`` call, from hooked query/key projections."""
    modules = [(name, m) for name, m in model.named_modules() if name.endswith("attn2")]
    assert modules, "no cross-attention (attn2) module"
    seen: dict[str, dict[str, torch.Tensor]] = {}
    handles = []
    for name, m in modules:
        for proj in ("to_q", "to_k"):
            def keep(_module, _args, out, name=name, proj=proj):
                seen.setdefault(name, {})[proj] = out.detach().double()
            handles.append(getattr(m, proj).register_forward_hook(keep))
    calls = []
    try:
        for step, (args, kwargs) in enumerate(inputs):
            seen.clear()
            model(*args, **kwargs)
            for name, m in modules:
                q, k = seen[name]["to_q"], seen[name]["to_k"]
                b, n = q.shape[0], m.heads
                q = q.view(b, q.shape[1], n, -1).transpose(1, 2)
                k = k.view(b, k.shape[1], n, -1).transpose(1, 2)
                scores = q @ k.transpose(-1, -2) * m.scale
                calls.append((name, step, scores, scores.softmax(-1)))
    finally:
        for h in handles:
            h.remove()
    return calls


@torch.no_grad()
def replay_joint_attention(model: torch.nn.Module, inputs: list, layout, monkeypatch) -> tuple[list, torch.Tensor]:
    """Joint attention: (layer, step, S_gr, P_gr) of the generated x reference block (P from the FULL softmax)
    and the output-space volume sum softmax_R(O_g O_r^T), from the query/key/output at the attention kernel."""
    kernel = transformer_flux.dispatch_attention_fn
    seen = []

    def recording_kernel(query, key, value, *args, **kwargs):
        out = kernel(query, key, value, *args, **kwargs)
        seen.append((query.detach().double(), key.detach().double(), out.detach().double()))
        return out

    monkeypatch.setattr(transformer_flux, "dispatch_attention_fn", recording_kernel)
    gen, ref = layout.blocks()
    calls, volume = [], None
    try:
        for step, (args, kwargs) in enumerate(inputs):
            seen.clear()
            model(*args, **kwargs)
            for layer, (q, k, out) in enumerate(seen):  # (B, S, N, d); layers in execution order
                q, k = q.transpose(1, 2), k.transpose(1, 2)
                scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
                probs = scores.softmax(-1)
                calls.append((f"layer{layer}", step, scores[:, :, gen, ref], probs[:, :, gen, ref]))
                o = out.flatten(2)  # (B, S, N*d), before the output projection
                p = torch.einsum("bgc,brc->bgr", o[:, gen], o[:, ref]).softmax(-1)
                volume = p if volume is None else volume + p
    finally:
        monkeypatch.setattr(transformer_flux, "dispatch_attention_fn", kernel)
    return calls, volume


def assert_rel(got: torch.Tensor, want: torch.Tensor, what: str, rel: float = 1e-5) -> None:
    got = got.double().reshape(want.shape)
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    assert scale > 0, f"{what}: the brute-force map is all zeros"
    assert err <= rel * scale, f"{what}: max |one-pass - brute force| = {err:.3g}, map max {scale:.3g}"


def test_maps_equal_brute_force_on_the_same_noisy_latent(run, monkeypatch):
    adapter, batch, rec = run.adapter, run.batch, run.rec
    latent = adapter.latent_grid(tuple(batch["target"].shape[-2:]))
    layout = adapter.token_layout
    if isinstance(adapter, JointAttentionCapture):
        calls, volume = replay_joint_attention(model_of(adapter), rec.inputs, adapter.joint_layout(batch), monkeypatch)
    else:
        calls, volume = replay_cross_attention(model_of(adapter), rec.inputs), None
    n_tokens = calls[0][2].shape[-1]
    drop = {d % n_tokens for d in layout.drop}
    kept = [i for i in range(n_tokens) if i not in drop]
    region = F.interpolate(batch["region_mask"].float(), size=latent, mode="area")[:, 0].double()
    want = brute_force_maps(calls, latent, kept, lambda q: layer_grid_by_hand(q, latent), T, T,
                            region=region, position=SRAM_POSITION)
    assert len({c[0] for c in calls}) == len(rec.acc.layer_names)
    gen = rec.acc.generated_maps()
    assert want["g"].flatten(1).std(1).min() > 0, "the brute-force generated-side map is constant"
    assert_rel(gen["ulam"], want["g"], "generated ULAM")
    assert_rel(gen["tlam"], want["tlam"], "generated TLAM (one group per timestep)")
    if layout.reference_side:
        assert_rel(rec.acc.reference_maps()["ulam"], want["r"], "reference ULAM")
        assert_rel(rec.acc.reference_maps(restricted=True)["ulam"], want["rm"], "reference ULAM, eq. (17)")
        assert_rel(rec.acc.sram(*SRAM_POSITION), want["sr"], "SRAM")
    else:
        assert rec.acc.reference_maps() == {}
    if volume is not None:  # ConceptAttention-style output-space maps, from the same calls
        assert rec.concept.calls == len(calls)
        assert_rel(rec.concept.volume, volume, "output-space volume")


def test_exactly_one_conditional_call_per_timestep(run):
    assert run.rec.calls == T
    assert len(run.rec.inputs) == T, f"{run.name}: {len(run.rec.inputs)} model calls for {T} timesteps"
    b = len(run.batch["sample_id"])
    for args, kwargs in run.rec.inputs:
        x = args[0] if args else kwargs["hidden_states"]
        assert x.shape[0] == b, f"{run.name}: model batch {x.shape[0]}, expected {b} (conditional only, no CFG half)"
    for layer, calls in run.rec.acc.calls.items():
        assert calls.tolist() == [1] * T, layer


def test_maps_do_not_depend_on_batching(run):
    alone = record_one_pass(run.adapter, collate([tiny_sample(1)]))
    pair, one = run.rec.acc, alone.acc
    for key in ("ulam", "tlam"):
        assert_rel(one.generated_maps()[key][0], pair.generated_maps()[key][1].double(), f"generated {key}")
    if run.adapter.token_layout.reference_side:
        assert_rel(one.reference_maps()["ulam"][0], pair.reference_maps()["ulam"][1].double(), "reference ULAM")
        assert_rel(one.reference_maps(restricted=True)["ulam"][0],
                   pair.reference_maps(restricted=True)["ulam"][1].double(), "reference ULAM, eq. (17)")
    if alone.concept is not None:
        assert_rel(alone.concept.volume[0], run.rec.concept.volume[1].double(), "output-space volume")


# --- the noisy latent -------------------------------------------------------------------------------
def scaled_linear_alphas_cumprod() -> torch.Tensor:
    """SD's noise schedule by hand: betas linear in sqrt from 0.00085 to 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


@pytest.mark.parametrize("residual", [False, True])
def test_reference_unet_input_is_the_ground_truth_noised_as_in_training(residual, tmp_path):
    spec = build_reference_unet(tmp_path)
    if residual:  # the model refines the masked image's latent: its x_0 is the scaled residual over it
        base = I2IModelSpec.load(tmp_path)
        I2IModelSpec(base.conditions, base.reference_tokens, residual_of="masked_image",
                     residual_scale=2.0).save(tmp_path)
    adapter = ADAPTERS.get("reference_unet")(spec, "cpu")
    batch = pair_batch()
    rec = record_one_pass(adapter, batch)
    pipe = adapter.pipe
    with torch.no_grad():
        x0 = pipe.encode_image(batch["target"]).double()
        cond = pipe.encode_conditions(batch["conditions"], x0.shape[-2:])
        if residual:
            x0 = (x0 - cond[:, :4].double()) * 2.0
        context = pipe.encode_reference(batch["reference"])
    seeds = [sample_seed(SEED, sid) for sid in batch["sample_id"]]
    eps = one_pass_noise(seeds, SETTINGS.schedule, tuple(x0.shape[1:])).double()
    abar = scaled_linear_alphas_cumprod()
    assert [int(args[1][0]) for args, _ in rec.inputs] == [750, 500, 250]  # noisiest first, as sampling runs
    for k, (args, kwargs) in enumerate(rec.inputs):
        t = SETTINGS.schedule[k]
        want = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps[k]
        torch.testing.assert_close(args[0][:, :4].double(), want, rtol=0, atol=1e-5)
        torch.testing.assert_close(args[0][:, 4:], cond)  # the generation's condition channels
        torch.testing.assert_close(kwargs["encoder_hidden_states"], context)  # the true reference, no null half


def test_reference_dit_input_is_the_ground_truth_on_the_flow_path(load):
    adapter = load("reference_dit")
    batch = pair_batch()
    rec = record_one_pass(adapter, batch)
    pipe = adapter.pipe
    with torch.no_grad():
        x0 = encode_image(pipe.vae, batch["target"]).double()
        ref = pipe.encode_reference(batch["reference"])
    seeds = [sample_seed(SEED, sid) for sid in batch["sample_id"]]
    eps = one_pass_noise(seeds, SETTINGS.schedule, tuple(x0.shape[1:])).double()
    g, c = x0.shape[-2] * x0.shape[-1], x0.shape[1]
    for k, (_, kwargs) in enumerate(rec.inputs):
        sigma = SETTINGS.schedule[k] / 1000
        hidden = kwargs["hidden_states"]
        torch.testing.assert_close(kwargs["timestep"], torch.full((2,), sigma))
        torch.testing.assert_close(hidden[:, :g, :c].double(), pack((1 - sigma) * x0 + sigma * eps[k]),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(hidden[:, g:, :c], pack(ref))  # the true reference tokens, no null half


# --- determinism ------------------------------------------------------------------------------------
def test_noise_depends_only_on_the_sample_seed_and_the_timestep():
    both = one_pass_noise([5, 9], (750, 250), (4, 3, 3))
    alone = one_pass_noise([9], (250,), (4, 3, 3))
    assert both.shape == (2, 2, 4, 3, 3)
    assert torch.equal(both[1, 1], alone[0, 0])  # other samples and other timesteps change nothing
    assert torch.equal(one_pass_noise([9, 5], (250, 750), (4, 3, 3))[1, 0], both[0, 1])
    assert not torch.equal(both[0, 0], both[1, 0])  # a new draw per timestep
    assert not torch.equal(both[0, 0], both[0, 1])  # and per sample


def test_same_maps_on_a_second_run(run):
    again = record_one_pass(run.adapter, run.batch)
    for key in ("ulam", "tlam"):
        assert torch.equal(again.acc.generated_maps()[key], run.rec.acc.generated_maps()[key])


# --- settings, stored maps and errors ------------------------------------------------------------
def test_settings_validate_and_order_the_timesteps():
    s = OnePassSettings([500, 250, 750])
    assert s.timesteps == (500, 250, 750) and s.schedule == (750, 500, 250)
    assert s.label == "one-pass t=250,500,750"
    assert OnePassSettings().timesteps == (250, 500, 750)
    for bad in ((), (250, 250), (-1,), (2.5,)):
        with pytest.raises(ValueError):
            OnePassSettings(bad)


def test_timestep_outside_the_training_range_is_an_error(load):
    with pytest.raises(ValueError, match="outside the scheduler's training range 0..999"):
        one_pass_with_capture(load("reference_unet"), pair_batch(), OnePassSettings((1000,)), SEED)


@pytest.mark.parametrize("name", ["reference_unet", "reference_dit"])
def test_stored_maps_have_generations_layout(name, load):
    adapter, batch = load(name), pair_batch()
    joint = isinstance(adapter, JointAttentionCapture)
    concept = OutputSpaceAccumulator(T) if joint else None
    acc, _ = one_pass_with_capture(adapter, batch, SETTINGS, SEED, CaptureSettings(), concept=concept)
    sampling = SamplingSettings(num_inference_steps=3, guidance_scale=3.0)
    gen_concept = OutputSpaceAccumulator(3) if joint else None
    _, gen_acc = generate_with_capture(adapter, batch, sampling, SEED, CaptureSettings(time_groups=3), gen_concept)
    one = split_accumulator(acc, batch, {"protocol": SETTINGS.label}, concept)
    gen = split_accumulator(gen_acc, batch, {}, gen_concept)
    assert len(one) == 2
    assert sorted(one[0].arrays) == sorted(gen[0].arrays)
    for key, arr in gen[0].arrays.items():
        assert one[0].arrays[key].shape == arr.shape, key
    assert one[0].meta["time_groups"] == T and one[0].meta["steps"] == T
    if joint:
        assert {"cg/concept", "cr/concept"} <= set(one[0].arrays)


def test_batch_without_target_is_an_error(load):
    batch = pair_batch()
    batch["target"] = None
    with pytest.raises(ValueError, match=r"has none \(an unpaired protocol\?\)"):
        one_pass_with_capture(load("reference_unet"), batch, SETTINGS, SEED)


def test_ldm_factory_without_one_pass_is_unsupported_and_the_capture_is_removed(load):
    adapter = load("ldm_unet")
    with pytest.raises(OnePassUnsupported, match="cannot be called on a given noisy latent: .*has no one_pass"):
        one_pass_with_capture(adapter, pair_batch(), SETTINGS, SEED)
    patched = [n for n, m in adapter.capture_module().named_modules() if "forward" in vars(m)]
    assert patched == []


class NoNoisyLatentAdapter(ModelAdapter):
    """An adapter that keeps the contract's default one_pass."""

    def __init__(self):
        super().__init__(ModelSpec("opaque", "opaque_sampler", ""))
        self.unet = tiny_unet()

    @property
    def token_layout(self):
        return TokenLayout(grid=(1, 1))

    def capture_module(self):
        return self.unet

    def latent_grid(self, image_size):
        return image_size[0] // 4, image_size[1] // 4

    def default_sampling(self):
        return SamplingSettings()

    def generate(self, batch, sampling, seeds, callback_on_step_end=None):
        raise NotImplementedError


def test_default_one_pass_is_unsupported_with_the_adapter_named():
    adapter = NoNoisyLatentAdapter()
    before = {k: type(p) for k, p in adapter.unet.attn_processors.items()}
    message = (r"adapter 'opaque_sampler' \(model 'opaque'\) cannot be called on a given noisy latent: "
               r"NoNoisyLatentAdapter does not implement one_pass")
    with pytest.raises(OnePassUnsupported, match=message):
        one_pass_with_capture(adapter, pair_batch(), SETTINGS, SEED)
    assert {k: type(p) for k, p in adapter.unet.attn_processors.items()} == before


def test_one_pass_that_skips_the_step_callback_is_an_error(load, monkeypatch):
    adapter = load("reference_unet")
    grid = adapter.latent_grid((32, 32))

    def no_callback(batch, timesteps, seeds, callback_on_step_end=None):
        noise = one_pass_noise(seeds, timesteps, (4, *grid))
        return adapter.pipe.one_pass(batch["reference"], batch["conditions"], batch["target"], timesteps, noise)

    monkeypatch.setattr(adapter, "one_pass", no_callback)
    with pytest.raises(RuntimeError, match="must call callback_on_step_end"):
        one_pass_with_capture(adapter, pair_batch(), SETTINGS, SEED)
