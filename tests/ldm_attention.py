"""A module shaped like CompVis ldm's ``CrossAttention``, shared by the capture and adapter tests."""

import torch
from torch import nn


class CrossAttention(nn.Module):
    """Mirrors ldm.modules.attention.CrossAttention: forward(x, context=None, mask=None), mask a (B, K) keep-mask."""

    def __init__(self, query_dim, context_dim=None, heads=2, dim_head=8):
        super().__init__()
        inner, context_dim = dim_head * heads, context_dim or query_dim
        self.scale, self.heads = dim_head**-0.5, heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None, mask=None):
        h = self.heads
        context = x if context is None else context
        q, k, v = (t.view(t.shape[0], t.shape[1], h, -1).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        sim = q @ k.transpose(-1, -2) * self.scale
        if mask is not None:
            sim = sim.masked_fill(~mask[:, None, None, :], -torch.finfo(sim.dtype).max)
        return self.to_out((sim.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
