"""Attention whose output stays on the fused kernel, with explicit probabilities for the captured rows only.

The layer output of every row (unconditional and conditional alike) comes from
the fused kernel of ``torch.nn.functional.scaled_dot_product_attention``,
exactly as an uncaptured layer computes it, so capture never changes what the
model generates. The logits ``S = Q K^T * scale`` are formed explicitly only
for the rows the sink asks for (the conditional half under classifier-free
guidance), as key-axis probabilities P and row log-sum-exps L, from which
every I2AM map follows (see :mod:`benchmark.capture.accumulator`). Where the
fused kernel returns L alongside its output (PyTorch's CPU flash attention),
it is taken from there and P = exp(S - L) costs no reduction at all. On CUDA
the flash, memory-efficient and cuDNN kernels return L too; :func:`fused_attention`
calls the one the public function would pick, so the output is unchanged. Where
no kernel returns L it is computed by :func:`chunked_logsumexp`, over blocks of
queries and keys.

Temporaries of the explicit paths (:func:`chunked_logsumexp`,
:class:`BlockProbabilities` row chunks) are kept under ``CAPTURE_BUDGET_BYTES``
(1 GiB; set the module attribute or pass ``budget``) whatever the resolution and
batch: at FLUX Kontext 1024x1024 (24 heads, G = 4096 generated queries,
R = 1024 reference keys) one batch row's float32 generated x reference block is
0.4 GB, the whole joint row (T + G + R = 5632 keys) 2.2 GB.
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
# The fused CUDA kernels that scaled_dot_product_attention dispatches to, each of which also returns the
# rows' log-sum-exp (natural log, float32). Looked up by name: absent ones are simply not used.
_CUDA_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention", None)
_CUDA_EFFICIENT = getattr(torch.ops.aten, "_scaled_dot_product_efficient_attention", None)
_CUDA_CUDNN = getattr(torch.ops.aten, "_scaled_dot_product_cudnn_attention", None)
_SDP_CHOICE = getattr(torch, "_fused_sdp_choice", None)

CAPTURE_BUDGET_BYTES = 1 << 30
"""Bound on the temporaries of one captured call's explicit logits (bytes); see the module docstring."""

# Key block of chunked_logsumexp: large enough that one GEMM per block is efficient, small enough that
# the query chunk stays long under any budget.
_KEY_BLOCK = 1024


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


def additive(mask: torch.Tensor) -> torch.Tensor:
    """A mask as float32 logit offsets: boolean True (attend) -> 0, False -> -inf; additive ones upcast."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))
    return mask.float()


def budget_bytes(budget: int | None = None) -> int:
    """``budget`` or, when None, the module's ``CAPTURE_BUDGET_BYTES`` as it is now."""
    return CAPTURE_BUDGET_BYTES if budget is None else int(budget)


def rows_per_chunk(n_rows: int, bytes_per_row: int, budget: int, fixed_bytes: int = 0) -> int:
    """How many rows of ``bytes_per_row`` temporaries fit ``budget`` besides ``fixed_bytes`` (at least 1)."""
    return max(1, min(n_rows, (budget - fixed_bytes) // max(1, bytes_per_row)))


@torch.no_grad()
def chunked_logsumexp(q: torch.Tensor, k: torch.Tensor, scale: float, additive_mask: torch.Tensor | None = None,
                      budget: int | None = None) -> torch.Tensor:
    """Rows' log-sum-exp of the logits S = q k^T * scale (+ mask) over all keys, float32, never all of S at once.

    q (..., Q, d), k (..., K, d); ``additive_mask`` (additive, or boolean with
    True = attend) broadcasts to (..., Q, K). Returns (..., Q) float32. S is formed in blocks of at most ``_KEY_BLOCK``
    keys by chunks of queries, so the temporaries (a block of logits and the
    exponentials inside its logsumexp, float32) stay under ``budget`` bytes.
    A row whose keys are all masked gets -inf.
    """
    budget = budget_bytes(budget)
    lead, n_q, n_k = q.shape[:-2], q.shape[-2], k.shape[-2]
    if additive_mask is not None:
        additive_mask = additive_mask.expand(*lead, n_q, n_k)
    heads = math.prod(lead)
    per_entry = 2 * 4 * heads  # a float32 logit and its exponential, for every batch row and head
    key_block = max(1, min(n_k, _KEY_BLOCK, budget // per_entry))
    # the upcast key block and the upcast query chunk are temporaries too
    fixed = 4 * heads * key_block * k.shape[-1]
    chunk = rows_per_chunk(n_q, per_entry * key_block + 4 * heads * q.shape[-1], budget, fixed)
    out = q.new_empty((*lead, n_q), dtype=torch.float32)
    for r0 in range(0, n_q, chunk):
        rows = slice(r0, min(r0 + chunk, n_q))
        q_c = q[..., rows, :].float() * scale
        lse = None
        for c0 in range(0, n_k, key_block):
            cols = slice(c0, min(c0 + key_block, n_k))
            s = torch.matmul(q_c, k[..., cols, :].float().transpose(-1, -2))
            if additive_mask is not None:
                s += additive(additive_mask[..., rows, cols])
            # logsumexp in place: torch.logsumexp would allocate a second block for its exponentials
            top = s.amax(-1, keepdim=True)
            top.masked_fill_(~top.isfinite(), 0.0)  # a fully masked row: exp(-inf) = 0, log 0 = -inf
            part = s.sub_(top).exp_().sum(-1).log_().add_(top.squeeze(-1))
            del s
            lse = part if lse is None else torch.logaddexp(lse, part)
        out[..., rows] = lse
    return out


class BlockProbabilities:
    """Key-axis probabilities of a block of the logits, by chunks of rows: P = exp(S + mask - lse), float32.

    q (..., Q, d) the block's queries, k (..., K, d) its keys, ``lse`` (..., Q)
    the rows' log-sum-exp over ALL keys of the call (the block may be a part of
    them), ``additive_mask`` broadcasting to (..., Q, K) (additive, or boolean
    with True = attend) or None. ``self(rows)``
    returns (..., len(rows), K) in [0, 1]: the block cut out of the full
    softmax. Computed as :func:`stacked_probabilities` does, with the
    subtraction of lse inside one GEMM. ``chunk`` is the number of rows per
    call that keeps its temporaries under the budget; :attr:`fixed_bytes` are
    the ones held for the whole call (the augmented keys, and ``reserved``
    bytes the caller needs beside the chunks).
    """

    def __init__(self, q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float,
                 additive_mask: torch.Tensor | None = None, budget: int | None = None, reserved: int = 0):
        self.q, self.lse = q, lse
        n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
        self.n_rows, self.n_keys = n_q, n_k
        self.mask = None if additive_mask is None else additive_mask.expand(*q.shape[:-2], n_q, n_k)
        k_aug = k.new_empty((*k.shape[:-1], d + 1), dtype=torch.float32)
        k_aug[..., :d] = k
        k_aug[..., :d] *= scale * _LOG2_E
        k_aug[..., d] = -_LOG2_E
        self.k_aug_t = k_aug.transpose(-1, -2)
        heads = math.prod(q.shape[:-2])
        self.fixed_bytes = k_aug.numel() * 4 + reserved
        # per row: the probabilities, the augmented query row, and the upcast mask row where there is one
        self.row_bytes = 4 * heads * (n_k + d + 1 + (n_k if additive_mask is not None else 0))
        self.chunk = rows_per_chunk(n_q, self.row_bytes, budget_bytes(budget), self.fixed_bytes)

    @torch.no_grad()
    def __call__(self, rows: slice) -> torch.Tensor:
        q, d = self.q[..., rows, :], self.q.shape[-1]
        q_aug = q.new_empty((*q.shape[:-1], d + 1), dtype=torch.float32)
        q_aug[..., :d] = q
        q_aug[..., d] = self.lse[..., rows]
        p = torch.matmul(q_aug, self.k_aug_t)
        del q_aug
        if self.mask is not None:
            p.add_(additive(self.mask[..., rows, :]), alpha=_LOG2_E)
        return p.exp2_()

    def chunks(self) -> list[slice]:
        return [slice(r0, min(r0 + self.chunk, self.n_rows)) for r0 in range(0, self.n_rows, self.chunk)]


def _cuda_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    attn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fused CUDA kernel that ``scaled_dot_product_attention`` would run, with its log-sum-exp, or None.

    Asks the dispatcher which backend the public function picks for exactly
    these arguments and calls that kernel the way the public function does
    (same arguments, no padding needed), so the output is the public
    function's own. None for the math backend, a backend whose kernel is
    absent in this build, or arguments the public function would first
    rewrite (a head width not a multiple of 8, a boolean mask, a mask for
    the flash or cuDNN kernel).
    """
    if _SDP_CHOICE is None or q.shape[-1] % 8 or v.shape[-1] % 8:
        return None
    if attn_mask is not None and (attn_mask.dtype == torch.bool or attn_mask.dtype != q.dtype):
        return None
    n_q, n_k = q.shape[-2], k.shape[-2]
    if attn_mask is not None:
        # as the public function prepares a bias for the memory-efficient kernel: storage aligned on the
        # key axis (padded, then cut back: same values), expanded to (B, N, Q, K)
        if n_k % 16:
            attn_mask = F.pad(attn_mask, (0, -n_k % 16))[..., :n_k]
        attn_mask = attn_mask.expand(q.shape[0], q.shape[1], n_q, n_k)
    from torch.nn.attention import SDPBackend

    choice = SDPBackend(_SDP_CHOICE(q, k, v, attn_mask, 0.0, False, scale=scale))
    if choice == SDPBackend.FLASH_ATTENTION and _CUDA_FLASH is not None and attn_mask is None:
        res = _CUDA_FLASH(q, k, v, 0.0, False, False, scale=scale)
    elif choice == SDPBackend.EFFICIENT_ATTENTION and _CUDA_EFFICIENT is not None:
        res = _CUDA_EFFICIENT(q, k, v, attn_mask, True, 0.0, False, scale=scale)
    elif choice == SDPBackend.CUDNN_ATTENTION and _CUDA_CUDNN is not None and attn_mask is None:
        res = _CUDA_CUDNN(q, k, v, attn_mask, True, 0.0, False, False, scale=scale)
    else:
        return None
    out, lse = res[0], res[1]
    # the memory-efficient kernel pads the query axis of its log-sum-exp to a multiple of 32; cuDNN's
    # has a trailing axis of 1
    return out, lse.flatten(2)[..., :n_q].float()


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scaled_dot_product_attention`` and, where its kernel returns it, the rows' log-sum-exp.

    q (B, N, Q, d), k (B, N, K, d), v (B, N, K, dv) -> output (B, N, Q, dv)
    and lse (B, N, Q) float32, or None. The output is the public function's
    own: the log-sum-exp is only taken from the kernel it runs anyway (CPU,
    float32, no mask; on CUDA the flash, memory-efficient or cuDNN kernel the
    dispatcher picks, see :func:`_cuda_attention`). Where it is None, callers
    use :func:`chunked_logsumexp`.
    """
    if _CPU_FLASH is not None and attn_mask is None and q.device.type == "cpu" and q.dtype == torch.float32:
        out, lse = _CPU_FLASH(q, k, v, 0.0, False, scale=scale)
        return out, lse
    if q.device.type == "cuda":
        res = _cuda_attention(q, k, v, scale, attn_mask)
        if res is not None:
            return res
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
