"""The generic to_q/to_k/heads path, on a module shaped like CompVis ldm's CrossAttention."""

import torch
from ldm_attention import CrossAttention
from torch import nn

from benchmark.capture import I2AMAccumulator, TokenLayout, capture_ldm
from benchmark.capture.session import CaptureSession

from helpers import Recorder


class Block(nn.Module):
    """A minimal ldm BasicTransformerBlock: self-attention attn1, cross-attention attn2."""

    def __init__(self, dim=16, context_dim=12):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim)
        self.attn2 = CrossAttention(dim, context_dim)

    def forward(self, x, context):
        x = x + self.attn1(x)
        return x + self.attn2(x, context=context)


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
    (layer, step, scores, probs), = rec.calls
    assert layer == "attn2" and scores.shape == (2, 2, 12, 5)
    # the logits are Q K^T * scale of the module, recomputed here independently
    x_in = x + block.attn1(x)
    q = block.attn2.to_q(x_in).view(2, 12, 2, 8).transpose(1, 2)
    k = block.attn2.to_k(ctx).view(2, 5, 2, 8).transpose(1, 2)
    assert torch.allclose(scores, q @ k.transpose(-1, -2) * 8**-0.5, atol=1e-6)
    assert torch.allclose(probs, scores.softmax(-1))


def test_ldm_capture_feeds_accumulator_with_mask():
    torch.manual_seed(0)
    block = Block()
    x, ctx = torch.randn(2, 12, 16), torch.randn(2, 5, 12) * 3
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[:, -1] = False
    ref = block(x, ctx)
    acc = I2AMAccumulator((4, 3), TokenLayout(grid=(2, 2), drop=(0,)), num_steps=1)
    with capture_ldm(block, CaptureSession(acc, 2)):
        out = block.attn2(x, context=ctx, mask=keep)
    expected = block.attn2(x, context=ctx, mask=keep)
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(ref, out)  # the mask mattered
    m = acc.reference_maps()["ulam"]
    assert m.shape == (2, 2, 2) and m.flatten(1).std(1).min() > 0
