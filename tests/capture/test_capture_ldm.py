"""The generic to_q/to_k/heads path, on a module shaped like CompVis ldm's CrossAttention."""

import torch
from ldm_attention import CrossAttention
from torch import nn

from benchmark.capture import I2AMAccumulator, TokenLayout, capture_ldm
from benchmark.capture.session import CaptureSession

from helpers import Recorder, assert_maps_close, brute_force_levels


class Block(nn.Module):
    """A minimal ldm BasicTransformerBlock: self-attention attn1, cross-attention attn2."""

    def __init__(self, dim=16, context_dim=12):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim)
        self.attn2 = CrossAttention(dim, context_dim)

    def forward(self, x, context):
        x = x + self.attn1(x)
        return x + self.attn2(x, context=context)


def _logits(attn: CrossAttention, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """Q K^T * scale of the module, recomputed here in float64: (B, heads, Q, K)."""
    b, n = x.shape[0], attn.heads
    q = attn.to_q(x).double().view(b, x.shape[1], n, -1).transpose(1, 2)
    k = attn.to_k(ctx).double().view(b, ctx.shape[1], n, -1).transpose(1, 2)
    return q @ k.transpose(-1, -2) * attn.scale


def test_ldm_capture_matches_forward_and_records_cross_attention_only():
    torch.manual_seed(0)
    block = Block()
    x, ctx = torch.randn(2, 4 * 3, 16), torch.randn(2, 5, 12) * 3
    ref = block(x, ctx)
    rec = Recorder(1)
    with capture_ldm(block, CaptureSession(rec, 2)) as names:
        out = block(x, ctx)
    assert names == ["attn2"]
    assert torch.allclose(out, ref, atol=1e-6)
    assert "forward" not in block.attn2.__dict__  # restored
    (layer, step, probs, lse), = rec.calls
    assert layer == "attn2" and probs.shape == (2, 2, 12, 5) and lse.shape == (2, 2, 12)
    logits = _logits(block.attn2, x + block.attn1(x), ctx)
    assert torch.allclose(probs.double(), logits.softmax(-1), atol=1e-6)
    assert torch.allclose(lse.double(), logits.logsumexp(-1), atol=1e-5)


def test_ldm_capture_feeds_accumulator_with_mask():
    torch.manual_seed(0)
    block = Block()
    x, ctx = torch.randn(2, 12, 16), torch.randn(2, 5, 12) * 3
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[:, -1] = False  # the last (kept) reference token is hidden from the attention
    region = torch.zeros(2, 4, 3)
    region[:, 1:3, :2] = 1
    acc = I2AMAccumulator((4, 3), TokenLayout(grid=(2, 2), drop=(0,)), num_steps=1, region_mask=region)
    with capture_ldm(block, CaptureSession(acc, 2)):
        out = block.attn2(x, context=ctx, mask=keep)
    assert torch.allclose(out, block.attn2(x, context=ctx, mask=keep), atol=1e-6)
    # independent: the module's logits, the definitions of the maps, a hidden token attended by no query
    ref = brute_force_levels([("attn2", 0, _logits(block.attn2, x, ctx))], (4, 3), [1, 2, 3, 4], 1, 1,
                             region=region.double(), positions=((2, 1),), key_keep=keep)
    gen, refm = acc.generated_maps(), acc.reference_maps()
    assert_maps_close(gen["ulam"], ref["g/ulam"])
    assert_maps_close(gen["hlam"], ref["g/hlam"])
    assert_maps_close(refm["ulam"].flatten(1), ref["r/ulam"])
    assert_maps_close(acc.reference_maps(restricted=True)["ulam"].flatten(1), ref["rm/ulam"])
    assert_maps_close(acc.sram(2, 1).flatten(1), ref["sr"][(2, 1)])
    assert (refm["ulam"].flatten(1)[:, -1] == 0).all()  # the hidden token has no reference-side weight
    assert gen["ulam"].flatten(1).std(1).min() > 0
