"""Attention computed once, feeding both the layer output and the capture."""

from __future__ import annotations

from typing import Callable

import torch

# sink(scores, probs): scores (B, N, Q, K) logits, probs (B, N, Q, K) softmax over keys.
Sink = Callable[[torch.Tensor, torch.Tensor], None]


def attention_with_capture(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, scale: float,
                           sink: Sink | None, additive_mask: torch.Tensor | None = None,
                           upcast: bool = False) -> torch.Tensor:
    """Multi-head attention that exposes its logits.

    query (B, Q, N*d), key (B, K, N*d), value (B, K, N*dv) -> output (B, Q, N*dv).
    The logits ``S = Q K^T * scale`` are computed once; the softmax over keys
    gives the layer output, and ``sink(S, P)`` receives both, so no second
    attention pass is ever run. ``additive_mask`` broadcasts to (B, N, Q, K).
    """
    b, q_len, _ = query.shape
    k_len = key.shape[1]
    q = query.view(b, q_len, heads, -1).transpose(1, 2)
    k = key.view(b, k_len, heads, -1).transpose(1, 2)
    v = value.view(b, k_len, heads, -1).transpose(1, 2)
    if upcast:
        q, k = q.float(), k.float()
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if additive_mask is not None:
        scores = scores + additive_mask
    probs = scores.softmax(dim=-1)
    if sink is not None:
        sink(scores, probs)
    out = torch.matmul(probs.to(v.dtype), v)
    return out.transpose(1, 2).reshape(b, q_len, -1)
