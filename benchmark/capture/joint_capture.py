"""Capture for joint-attention diffusion transformers (FLUX, FLUX Kontext).

In a joint-attention block text tokens, generated-image tokens and (FLUX
Kontext) reference-image tokens sit in ONE sequence ``[text (T); generated (G);
reference (R)]``. I2AM reads the generated x reference block of the attention
matrix with the same rules as the UNet path: the key-axis probabilities of the
FULL softmax (other keys dropped after it) for the reference side, and the
softmax over the generated-query axis of the block's logits for the generated
side, fed to the same :class:`~benchmark.capture.accumulator.I2AMAccumulator`.
The output of every token stays on the fused attention kernel; explicit
logits are formed only for the generated x reference block of the conditional
rows, by chunks of generated queries whose temporaries stay under
``attention.CAPTURE_BUDGET_BYTES``. The rows' log-sum-exp over the whole joint
sequence comes from the fused kernel (:func:`~benchmark.capture.attention.fused_attention`,
CPU float32 and CUDA), else from :func:`~benchmark.capture.attention.chunked_logsumexp`;
the (B, N, G, T + G + R) logits are never formed.

ConceptAttention-style maps (seed 003) use the attention OUTPUT space instead:
for every generated token, the dot products of its attention output (before
the output projection) with the reference tokens' outputs, softmaxed over
reference tokens, summed over the chosen layers and steps
(:class:`OutputSpaceAccumulator`). The logits, outputs and image are the
ones the block computes anyway, and the output is unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import _get_qkv_projections

from benchmark.capture.attention import BlockProbabilities, chunked_logsumexp, fused_attention
from benchmark.capture.diffusers_capture import swapped_processors
from benchmark.capture.session import CaptureSession


@dataclass(frozen=True)
class JointLayout:
    """Token counts of the joint sequence: text, generated image, reference image."""

    text: int
    generated: int
    reference: int

    def blocks(self) -> tuple[slice, slice]:
        g0 = self.text
        return slice(g0, g0 + self.generated), slice(g0 + self.generated, g0 + self.generated + self.reference)


class OutputSpaceAccumulator:
    """Sum over layers and steps of softmax_R(O_g O_r^T): (B, G, R) for the conditional rows.

    Maps (raw): ``generated_map(reference_weights)`` (B, G) = volume @ w_r, the
    share of each generated token's output-space similarity that falls on the
    reference region; ``reference_map(generated_weights)`` (B, R) = the mean of
    the volume over the generated region.
    """

    def __init__(self, num_steps: int, layers: set[str] | None = None):
        self.num_steps, self.layers = num_steps, layers
        self.volume: torch.Tensor | None = None
        self.calls = 0

    @torch.no_grad()
    def update(self, layer: str, out_generated: torch.Tensor, out_reference: torch.Tensor) -> None:
        """out_generated (B, G, C), out_reference (B, R, C): attention outputs before the projection."""
        if self.layers is not None and layer not in self.layers:
            return
        sim = torch.einsum("bgc,brc->bgr", out_generated.float(), out_reference.float())
        p = sim.softmax(-1)
        self.volume = p if self.volume is None else self.volume + p
        self.calls += 1

    def generated_map(self, reference_weights: torch.Tensor) -> torch.Tensor:
        """reference_weights (B, R) in [0, 1] (e.g. the reference mask on the token grid) -> (B, G)."""
        return torch.einsum("bgr,br->bg", self.volume, reference_weights.float().to(self.volume.device))

    def reference_map(self, generated_weights: torch.Tensor | None = None) -> torch.Tensor:
        """generated_weights (B, G) or None (all) -> (B, R)."""
        if generated_weights is None:
            return self.volume.mean(1)
        w = generated_weights.float().to(self.volume.device)
        return torch.einsum("bgr,bg->br", self.volume, w) / w.sum(1, keepdim=True).clamp_min(1e-12)


# (q, k, v, scale, attn_mask) -> (output, rows' log-sum-exp (B, N, S) float32 or None), as fused_attention
AttentionWithLse = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None],
                            tuple[torch.Tensor, torch.Tensor | None]]


class FluxI2AMProcessor:
    """Drop-in for diffusers' ``FluxAttnProcessor`` that feeds I2AM and output-space captures.

    ``attention`` computes the captured calls' output and, where it can, the
    rows' log-sum-exp (default :func:`~benchmark.capture.attention.fused_attention`);
    ``budget`` bounds the capture's temporaries in bytes (default: the module's
    ``CAPTURE_BUDGET_BYTES`` at call time).
    """

    def __init__(self, session: CaptureSession, layer: str, layout: JointLayout,
                 concept: OutputSpaceAccumulator | None = None, attention: AttentionWithLse = fused_attention,
                 budget: int | None = None):
        self.session, self.layer, self.layout, self.concept = session, layer, layout, concept
        self.attention, self.budget = attention, budget

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        query, key, value, e_query, e_key, e_value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if attn.added_kv_proj_dim is not None:
            e_query, e_key, e_value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (e_query, e_key, e_value))
            e_query, e_key = attn.norm_added_q(e_query), attn.norm_added_k(e_key)
            query, key, value = (torch.cat([a, b], dim=1) for a, b in ((e_query, query), (e_key, key), (e_value, value)))
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # (B, H, S, D)
        # The output of every row stays on the fused kernel (as in FluxAttnProcessor); only the
        # captured rows' generated queries get explicit logits, in _capture.
        rows = self.session.capture_rows(q.shape[0])
        if rows is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        else:
            out, lse = self.attention(q, k, v, q.shape[-1] ** -0.5, attention_mask)
        out = out.transpose(1, 2).flatten(2, 3).to(query.dtype)  # (B, S, H*D)
        if rows is not None:
            self._capture(rows, q, k, attention_mask, lse, out)
        if encoder_hidden_states is not None:
            n_text = encoder_hidden_states.shape[1]
            encoder_hidden_states, hidden = out[:, :n_text], out[:, n_text:]
            hidden = attn.to_out[1](attn.to_out[0](hidden.contiguous()))
            return hidden, attn.to_add_out(encoder_hidden_states.contiguous())
        return out

    def _capture(self, rows: slice, q: torch.Tensor, k: torch.Tensor, attention_mask: torch.Tensor | None,
                 lse: torch.Tensor | None, out: torch.Tensor) -> None:
        """The captured ``rows`` of one call. q, k (B, H, S, D); ``attention_mask`` bool (True = attend) or
        additive, broadcast to (B, H, S, S); lse (B, H, S) from the fused kernel or None; out (B, S, H*D)
        the attention output."""
        s = self.session
        gen, ref = self.layout.blocks()
        if ref.stop > k.shape[2]:
            raise ValueError(f"layer {self.layer}: sequence of {k.shape[2]} tokens is shorter than the "
                             f"declared layout {self.layout}")
        mask = None
        if attention_mask is not None:
            # a view: the chunks convert their part (boolean -> additive) one at a time
            mask = attention_mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])[rows][:, :, gen]
        # The softmax runs over ALL keys of the generated rows (text and image tokens take their share):
        # lse is the full rows' log-sum-exp, and only the reference block P = exp(S_block - lse) is formed,
        # so exp(S_block) = P * exp(lse) still holds for the generated-side identity.
        scale = q.shape[-1] ** -0.5
        q_gen, k_rows = q[rows][:, :, gen], k[rows]
        if lse is None:
            lse = chunked_logsumexp(q_gen, k_rows, scale, mask, self.budget)
        else:
            lse = lse[rows][:, :, gen]
        # reserved: what the accumulator holds beside a chunk (row weights, per-token sums, a few of each)
        n_rows = q_gen.shape[0] * q_gen.shape[1]
        reserved = 4 * n_rows * (2 * self.layout.generated + 4 * self.layout.reference)
        block = BlockProbabilities(q_gen, k_rows[:, :, ref], lse, scale,
                                   None if mask is None else mask[..., ref], self.budget, reserved)
        chunks = block.chunks()
        if len(chunks) == 1:
            s.accumulator.update(self.layer, block(chunks[0]), lse, s.step)
        else:
            s.accumulator.update_rows(self.layer, block, chunks, lse, block.n_keys, s.step)
        if self.concept is not None:
            self.concept.update(self.layer, out[rows][:, gen], out[rows][:, ref])


@contextmanager
def capture_joint(transformer: torch.nn.Module, session: CaptureSession, layout: JointLayout,
                  concept: OutputSpaceAccumulator | None = None, layers: list[str] | None = None,
                  attention: AttentionWithLse = fused_attention, budget: int | None = None) -> Iterator[list[str]]:
    """Install :class:`FluxI2AMProcessor` on ``layers`` (default: every attention processor); restore on exit."""
    layers = list(transformer.attn_processors) if layers is None else layers
    with swapped_processors(transformer, layers, lambda layer: FluxI2AMProcessor(session, layer, layout, concept,
                                                                                 attention, budget)):
        yield layers
