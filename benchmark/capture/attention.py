"""Attention whose output stays on the fused kernel, with explicit probabilities for the captured rows only.

The layer output of every row (unconditional and conditional alike) comes from
the fused kernel of ``torch.nn.functional.scaled_dot_product_attention``,
exactly as an uncaptured layer computes it, so capture never changes what the
model generates. The logits ``S = Q K^T * scale`` are formed explicitly only
for the rows the sink asks for (the conditional half under classifier-free
guidance), as key-axis probabilities P and row log-sum-exps L, from which
every I2AM map follows (see :mod:`benchmark.capture.accumulator`). Where the
fused kernel returns L alongside its output (PyTorch's CPU flash attention),
it is taken from there and P = exp(S - L) costs no reduction at all.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

# The CPU flash-attention kernel that scaled_dot_product_attention dispatches to for float32 without a
# mask; unlike the public function it also returns the rows' log-sum-exp. Absent in some builds.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_LOG2_E = math.log2(math.e)


class CaptureSink(Protocol):
    """Where one layer's captured attention goes (built by :meth:`CaptureSession.sink`)."""

    def rows(self, batch: int) -> slice | None:
        """The rows of an attention call with ``batch`` rows to capture now, or None for none."""

    def __call__(self, q: torch.Tensor, k: torch.Tensor, scale: float, additive_mask: torch.Tensor | None,
                 lse: torch.Tensor | None) -> None:
        """The captured rows' queries q (b, N, Q, d) and keys k (b, N, K, d), the logit scale, the additive
        mask of those rows (broadcasting to (b, N, Q, K)) or None, and their log-sum-exp (b, N, Q) as the
        fused kernel computed it, or None where it does not return it."""


def key_softmax(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the last (key) axis and the rows' log-sum-exp: scores (..., Q, K) -> (probs, lse (..., Q)).

    ``exp(scores) = probs * exp(lse)`` row-wise. The log-sum-exp is read off
    the softmax itself: the largest probability of a row is
    ``exp(max_k S - lse)``, so ``lse = max_k S - log(max_k P)``, which costs
    two max reductions instead of a second pass of exponentials, and is exact
    to float rounding because that largest probability is at least 1/K.
    """
    probs = scores.softmax(-1)
    lse = scores.amax(-1) - probs.amax(-1).log()
    return probs, lse


@torch.no_grad()
def captured_probabilities(q: torch.Tensor, k: torch.Tensor, scale: float, additive_mask: torch.Tensor | None = None,
                           lse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit attention probabilities of the captured rows, in float32.

    q (..., Q, d), k (..., K, d); ``additive_mask`` broadcasts to (..., Q, K);
    ``lse`` (..., Q), when given, is the rows' log-sum-exp of the same logits
    (from the fused kernel), so that P = exp(S - lse) needs no reduction.
    Returns probs (..., Q, K) in [0, 1] (rows sum to 1 to float rounding) and
    lse (..., Q). Float32 whatever the model's dtype: the maps divide by sums
    of exponentials that half precision would underflow.
    """
    if lse is None or additive_mask is not None:
        scores = torch.matmul(q.float() * scale, k.float().transpose(-1, -2))
        if additive_mask is not None:
            scores = scores + additive_mask.float()
        return key_softmax(scores)
    probs, lse = stacked_probabilities([q], [k], [lse], scale)
    return probs[0], lse[0]


@torch.no_grad()
def stacked_probabilities(qs: list[torch.Tensor], ks: list[torch.Tensor], lses: list[torch.Tensor],
                          scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`captured_probabilities` of L equal-shape calls with known log-sum-exps, stacked.

    qs[i] (..., Q, d), ks[i] (..., K, d), lses[i] (..., Q) -> probs (L, ..., Q, K)
    in [0, 1] and lse (L, ..., Q), float32.
    """
    # (S - lse) * log2(e) as ONE product, [q, lse] [k * scale * log2(e), -log2(e)]^T: the subtraction
    # rides along in the GEMM instead of costing a broadcast pass over the (..., Q, K) logits, the scale
    # lands on the smaller operand, and exp2, which then gives exp(S - lse), is several times cheaper than
    # exp on CPUs. The operands are written straight into their stacked buffers: one copy each, and a
    # number of operations that does not grow with the number of layers.
    q0, k0 = qs[0], ks[0]
    d = q0.shape[-1]
    q_aug = q0.new_empty((len(qs), *q0.shape[:-1], d + 1), dtype=torch.float32)
    k_aug = k0.new_empty((len(ks), *k0.shape[:-1], d + 1), dtype=torch.float32)
    torch.cat([q[None] for q in qs], out=q_aug[..., :d])
    torch.cat([lse[None] for lse in lses], out=q_aug[..., d])
    torch.cat([k[None] for k in ks], out=k_aug[..., :d])
    k_aug[..., :d] *= scale * _LOG2_E
    k_aug[..., d] = -_LOG2_E
    return torch.matmul(q_aug, k_aug.transpose(-1, -2)).exp2_(), q_aug[..., d]


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scaled_dot_product_attention`` and, where its kernel returns it, the rows' log-sum-exp.

    q (B, N, Q, d), k (B, N, K, d), v (B, N, K, dv) -> output (B, N, Q, dv)
    and lse (B, N, Q) float32, or None. The output is the public function's
    own: the log-sum-exp is only taken from the kernel it runs anyway (CPU,
    float32, no mask).
    """
    if _CPU_FLASH is not None and attn_mask is None and q.device.type == "cpu" and q.dtype == torch.float32:
        out, lse = _CPU_FLASH(q, k, v, 0.0, False, scale=scale)
        return out, lse
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale), None


def _rows_of(mask: torch.Tensor | None, rows: slice, batch: int) -> torch.Tensor | None:
    """The mask's entries for ``rows``, keeping a broadcast (size-1) batch axis as it is."""
    if mask is None or mask.ndim < 4 or mask.shape[0] == 1:
        return mask
    if mask.shape[0] != batch:
        raise ValueError(f"attention mask batch {mask.shape[0]} does not match the attention batch {batch}")
    return mask[rows]


def attention_with_capture(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, scale: float,
                           sink: CaptureSink | None, additive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention through the fused kernel, handing ``sink`` the captured rows' queries and keys.

    query (B, Q, N*d), key (B, K, N*d), value (B, K, N*dv) -> output (B, Q, N*dv).
    ``additive_mask`` broadcasts to (B, N, Q, K). When ``sink.rows(B)`` names
    rows, ``sink(q, k, scale, mask, lse)`` receives those rows (their logits
    are formed from them with :func:`captured_probabilities`); the output of
    every row comes from the fused kernel regardless.
    """
    b, q_len, _ = query.shape
    k_len = key.shape[1]
    q = query.view(b, q_len, heads, -1).transpose(1, 2)
    k = key.view(b, k_len, heads, -1).transpose(1, 2)
    v = value.view(b, k_len, heads, -1).transpose(1, 2)
    mask = additive_mask.to(q.dtype) if additive_mask is not None else None
    rows = sink.rows(b) if sink is not None else None
    if rows is None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    else:
        out, lse = fused_attention(q, k, v, scale, mask)
        sink(q[rows], k[rows], scale, _rows_of(additive_mask, rows, b), None if lse is None else lse[rows])
    return out.transpose(1, 2).reshape(b, q_len, -1)
