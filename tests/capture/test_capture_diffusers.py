import pickle

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

import benchmark.capture.accumulator as accumulator_module
import benchmark.capture.attention as attention_module
from benchmark.capture import MAP_LEVELS, I2AMAccumulator, TokenLayout, capture_diffusers, cross_attention_layers
from benchmark.capture.attention import captured_probabilities, fused_attention, key_softmax
from benchmark.capture.session import CaptureSession

from helpers import LogitRecorder, Recorder, assert_maps_close, brute_force_levels, tiny_unet

LATENT = (8, 6)
TOKENS = TokenLayout(grid=(3, 2), drop=(0,))  # CLS + 3x2 patch tokens


def run(unet, session, steps, b=2, cfg=True, start=0, seed=0, ctx_scale=3.0):
    """A sampling-like loop: one UNet call per step, [uncond; cond] under CFG."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(b, 7, 16, generator=g) * ctx_scale
    outs = []
    for i in range(start, steps):
        x = torch.randn(b, 4, *LATENT, generator=torch.Generator().manual_seed(100 + i))
        e = torch.cat([torch.zeros_like(ctx), ctx]) if cfg else ctx
        xx = torch.cat([x, x]) if cfg else x
        session.step = i
        with torch.no_grad():
            outs.append(unet(xx, 999 - 10 * i, encoder_hidden_states=e).sample)
    return outs


def test_capture_leaves_outputs_unchanged():
    unet = tiny_unet()
    unet.set_attn_processor(AttnProcessor2_0())
    acc = I2AMAccumulator(LATENT, TOKENS, num_steps=3)
    session = CaptureSession(acc, n_samples=2)
    plain = run(unet, session, 3)
    with capture_diffusers(unet, session) as layers:
        captured = run(unet, session, 3)
    assert len(layers) == 7  # 2 down + 1 mid + 4 up cross-attention layers
    assert all(type(p) is AttnProcessor2_0 for p in unet.attn_processors.values())  # restored
    for a, b in zip(plain, captured):  # every row's output comes from the same fused kernel
        assert torch.equal(a, b)


def test_only_cross_attention_layers_get_the_processor():
    unet = tiny_unet()
    keys = cross_attention_layers(unet)
    assert keys and all(k.endswith("attn2.processor") for k in keys)


def _maps_against_brute_force(ctx_scale: float):
    steps, groups = 4, 2
    unet = tiny_unet()
    region = torch.zeros(2, 1, *LATENT)
    region[:, :, 2:6, 1:4] = 1
    acc = I2AMAccumulator(LATENT, TOKENS, num_steps=steps, num_groups=groups, region_mask=region)
    session = CaptureSession(acc, 2)
    logits = LogitRecorder(unet, 2, lambda: session.step)
    with capture_diffusers(unet, session):
        run(unet, session, steps, ctx_scale=ctx_scale)
    logits.remove()
    positions = ((3, 2), (0, 5))
    ref = brute_force_levels(logits.calls, LATENT, [1, 2, 3, 4, 5, 6], steps, groups,
                             region=region[:, 0].double(), positions=positions)
    return acc, ref, positions


@pytest.mark.parametrize("ctx_scale", [3.0, 12.0])
def test_maps_match_brute_force(ctx_scale):
    # ctx_scale 12 makes the attention sharply peaked (logits spanning tens of nats), where the
    # log-sum-exp identity has the least headroom; 3 is the ordinary case.
    acc, ref, positions = _maps_against_brute_force(ctx_scale)
    gen, refm, rm = acc.generated_maps(), acc.reference_maps(), acc.reference_maps(restricted=True)
    for level in ("ulam", "tlam", "hlam", "llam"):
        assert_maps_close(gen[level], ref[f"g/{level}"])
        assert_maps_close(refm[level].flatten(2 if level != "ulam" else 1), ref[f"r/{level}"])
        assert_maps_close(rm[level].flatten(2 if level != "ulam" else 1), ref[f"rm/{level}"])
    for pos in positions:
        assert_maps_close(acc.sram(*pos).flatten(1), ref["sr"][pos])
    # heads and layers: their means must give back the unified map
    assert torch.allclose(gen["layer_heads"].mean(2), gen["llam"], rtol=1e-5)
    assert torch.allclose(gen["layer_heads"].mean(1), gen["hlam"], rtol=1e-5)
    # a layer that attends non-uniformly gives non-constant maps
    assert gen["ulam"].flatten(1).std(1).min() > 0
    assert refm["ulam"].flatten(1).std(1).min() > 0


def test_only_requested_levels_produce_state():
    unet = tiny_unet()
    region = torch.ones(2, 1, *LATENT)
    states = {}
    for name, levels, mask in (("ulam", ("ulam",), None), ("ulam+region", ("ulam",), region),
                               ("all", MAP_LEVELS, region)):
        acc = I2AMAccumulator(LATENT, TOKENS, num_steps=2, levels=levels, region_mask=mask)
        s = CaptureSession(acc, 2)
        with capture_diffusers(unet, s):
            run(unet, s, 2)
        states[name] = acc
    only = states["ulam"]
    assert only.sr == {} and only.rm == {}
    assert set(only.generated_maps()) == {"ulam"} and set(only.reference_maps()) == {"ulam"}
    with pytest.raises(ValueError, match="SRAM was not requested"):
        only.reference_volume()
    with pytest.raises(ValueError, match="no region_mask"):
        only.reference_maps(restricted=True)
    assert states["ulam+region"].sr == {} and set(states["ulam+region"].rm) == set(only.layers)
    full = states["all"]
    assert set(full.sr) == set(full.rm) == set(full.layers)
    assert set(full.generated_maps()) == {"ulam", "tlam", "hlam", "llam", "layer_heads"}
    assert only.state_bytes() < states["ulam+region"].state_bytes() < full.state_bytes()
    # the state a level does not need is not there, and the maps that exist do not depend on it
    assert torch.allclose(only.generated_maps()["ulam"], full.generated_maps()["ulam"], rtol=1e-6)
    assert torch.allclose(only.reference_maps()["ulam"], full.reference_maps()["ulam"])


def test_only_conditional_branch_is_captured():
    unet = tiny_unet()
    rec = Recorder(2)
    s = CaptureSession(rec, 2)
    with capture_diffusers(unet, s):
        run(unet, s, 2, cfg=True)
    assert len(rec.calls) == 2 * 7 and all(c[2].shape[0] == 2 for c in rec.calls)
    # The unconditional context is all zeros, so its key-axis probabilities would be exactly uniform;
    # the captured rows are all non-uniform (conditional), and lse is their rows' log-sum-exp.
    for _, _, probs, lse in rec.calls:
        assert probs.std(-1).amax(dim=(1, 2)).min() > 1e-4
        assert torch.allclose(probs.sum(-1), torch.ones_like(lse), atol=1e-6)


def test_uncaptured_calls_form_no_logits_and_leave_outputs_unchanged():
    unet = tiny_unet()
    unet.set_attn_processor(AttnProcessor2_0())
    rec = Recorder(num_steps=1)
    s = CaptureSession(rec, 2)
    plain = run(unet, s, 2)
    with capture_diffusers(unet, s):
        captured = run(unet, s, 2)  # step 1 is past num_steps: not captured
        s.enabled = False
        disabled = run(unet, s, 1)
    assert {c[1] for c in rec.calls} == {0} and len(rec.calls) == 7
    assert all(torch.equal(a, b) for a, b in zip(plain, captured))
    assert torch.equal(plain[0], disabled[0])


def test_batched_and_one_by_one_paths_agree(monkeypatch):
    # Small calls are deferred and reduced with the other layers of their shape, from the fused kernel's
    # log-sum-exp; the reference runs every call at once, with the log-sum-exp read off its own softmax.
    def filled():
        region = torch.zeros(2, 1, *LATENT)
        region[:, :, 1:5, 2:5] = 1
        acc = I2AMAccumulator(LATENT, TOKENS, num_steps=4, num_groups=2, region_mask=region)
        s = CaptureSession(acc, 2)
        unet = tiny_unet()
        with capture_diffusers(unet, s):
            run(unet, s, 4)
        return acc

    batched = filled()
    assert len(batched._banks) < len(batched.layers)  # some layers were reduced together
    monkeypatch.setattr(accumulator_module, "BATCH_MAX_ELEMENTS", 0)
    monkeypatch.setattr(attention_module, "_CPU_FLASH", None)
    alone = filled()
    assert len(alone._banks) == len(alone.layers)
    assert list(alone.layers) == list(batched.layers)
    for name in ("g", "r", "rm", "sr"):
        for layer in batched.layers:
            assert_maps_close(getattr(batched, name)[layer], getattr(alone, name)[layer])
    assert {k: v.tolist() for k, v in batched.calls.items()} == {k: v.tolist() for k, v in alone.calls.items()}


def test_pickled_accumulator_keeps_deferred_calls():
    unet = tiny_unet()
    acc = I2AMAccumulator(LATENT, TOKENS, num_steps=2)
    s = CaptureSession(acc, 2)
    with capture_diffusers(unet, s):
        run(unet, s, 2)
    assert acc._pending  # the last step's calls are still deferred
    copy = pickle.loads(pickle.dumps(acc))
    assert not copy._pending
    assert torch.equal(copy.generated_maps()["ulam"], acc.generated_maps()["ulam"])
    assert torch.equal(copy.reference_maps()["hlam"], acc.reference_maps()["hlam"])


def test_key_softmax_returns_the_rows_log_sum_exp():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 5, 9, generator=g) * torch.tensor([0.1, 5.0, 40.0])[:, None, None]
    probs, lse = key_softmax(scores)
    assert torch.allclose(probs, scores.softmax(-1))
    assert torch.allclose(lse, scores.logsumexp(-1), rtol=1e-6, atol=1e-5)
    # the identity the generated side relies on
    assert torch.allclose(probs * lse.exp()[..., None], scores.exp(), rtol=1e-5)


def test_fused_attention_is_sdpa_and_returns_the_log_sum_exp():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (10, 7, 7))
    out, lse = fused_attention(q, k, v, 0.3)
    assert torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3))
    if lse is not None:  # CPU flash attention exposes it
        assert torch.allclose(lse, (q @ k.transpose(-1, -2) * 0.3).logsumexp(-1), atol=1e-5)
        probs, _ = captured_probabilities(q, k, 0.3, lse=lse)
        assert torch.allclose(probs, (q @ k.transpose(-1, -2) * 0.3).softmax(-1), atol=1e-6)


@pytest.mark.parametrize("spread", [1.0, 60.0])
def test_generated_side_equals_the_query_axis_softmax(spread):
    # The generated side is never computed as a softmax over queries; it must still equal one, also for
    # logits spread over tens of nats within a head.
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 3, 12, 7, generator=g) * spread / 4
    acc = I2AMAccumulator((4, 3), TOKENS, num_steps=1)
    acc.update("layer", *key_softmax(scores), 0)
    expected = scores.double().softmax(2)[..., 1:].mean(-1)  # token 0 dropped after the softmax
    assert (scores.amax((-1, -2)) - scores.amin((-1, -2))).max() > spread / 2
    assert_maps_close(acc.g["layer"][:, 0], expected)


def test_state_does_not_grow_with_steps():
    sizes = []
    for steps in (10, 50):
        unet = tiny_unet()
        acc = I2AMAccumulator(LATENT, TOKENS, num_steps=steps, num_groups=2)
        s = CaptureSession(acc, 1)
        with capture_diffusers(unet, s):
            run(unet, s, steps, b=1, cfg=False)
        sizes.append(acc.state_bytes())
    assert sizes[0] == sizes[1] > 0


def test_merging_shards_equals_one_pass():
    steps = 10
    unet = tiny_unet()
    whole = I2AMAccumulator(LATENT, TOKENS, num_steps=steps, num_groups=5)
    a = I2AMAccumulator(LATENT, TOKENS, num_steps=steps, num_groups=5)
    b = I2AMAccumulator(LATENT, TOKENS, num_steps=steps, num_groups=5)
    for acc, start, stop in ((whole, 0, steps), (a, 0, 5), (b, 5, steps)):
        s = CaptureSession(acc, 2)
        with capture_diffusers(unet, s):
            run(unet, s, stop, start=start)
    a.merge(b)
    for key in ("ulam", "tlam", "hlam", "llam", "layer_heads"):
        assert torch.allclose(a.generated_maps()[key], whole.generated_maps()[key], rtol=1e-6, atol=1e-9)
        assert torch.allclose(a.reference_maps()[key], whole.reference_maps()[key], rtol=1e-6, atol=1e-9)
    assert torch.allclose(a.reference_volume(), whole.reference_volume(), rtol=1e-6)


def test_merge_rejects_different_configs():
    a = I2AMAccumulator(LATENT, TOKENS, num_steps=10)
    b = I2AMAccumulator(LATENT, TOKENS, num_steps=20)
    with pytest.raises(ValueError, match="different configs"):
        a.merge(b)
    c = I2AMAccumulator(LATENT, TOKENS, num_steps=10, region_mask=torch.ones(2, *LATENT))
    with pytest.raises(ValueError, match="region_mask"):
        a.merge(c)


def test_token_layout_mismatch_is_a_clear_error():
    unet = tiny_unet()
    acc = I2AMAccumulator(LATENT, TokenLayout(grid=(4, 4), drop=(0,)), num_steps=1)
    s = CaptureSession(acc, 2)
    with pytest.raises(ValueError, match="declared grid"):
        with capture_diffusers(unet, s):
            run(unet, s, 1)
    assert all("I2AM" not in type(p).__name__ for p in unet.attn_processors.values())


def test_single_token_layout_has_no_reference_side():
    unet = tiny_unet()
    acc = I2AMAccumulator(LATENT, TokenLayout(grid=(1, 1)), num_steps=2)
    s = CaptureSession(acc, 2)
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(2, 1, 16, generator=g)
    with capture_diffusers(unet, s):
        for i in range(2):
            s.step = i
            unet(torch.randn(2, 4, *LATENT), 500, encoder_hidden_states=ctx)
    assert acc.reference_maps() == {}
    assert acc.generated_maps()["ulam"].flatten(1).std(1).min() > 0
