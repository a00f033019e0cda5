"""Capture through a diffusers attention processor, installed with ``set_attn_processor``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from benchmark.capture.attention import attention_with_capture
from benchmark.capture.session import CaptureSession


def cross_attention_layers(model: torch.nn.Module, name_filter: Callable[[str], bool] | None = None) -> list[str]:
    """Processor keys (``...attn2.processor``) of the model's cross-attention modules, optionally filtered."""
    keys = []
    for key in model.attn_processors:
        module = model.get_submodule(key.removesuffix(".processor"))
        if getattr(module, "is_cross_attention", False) and (name_filter is None or name_filter(key)):
            keys.append(key)
    return keys


class I2AMAttnProcessor:
    """A drop-in for diffusers' ``AttnProcessor2_0`` that also feeds the I2AM capture.

    The output of every row comes from the same fused kernel as in
    ``AttnProcessor2_0``, so captured and uncaptured runs agree; explicit
    probabilities are formed for the captured (conditional) rows only
    (:func:`attention_with_capture`).
    """

    def __init__(self, session: CaptureSession, layer: str):
        self.session, self.layer = session, layer
        self.sink = session.sink(layer)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[:2]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        if getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None:
            head_dim = key.shape[-1] // attn.heads
            if attn.norm_q is not None:
                query = attn.norm_q(query.view(batch, -1, attn.heads, head_dim)).flatten(2)
            if attn.norm_k is not None:
                key = attn.norm_k(key.view(batch, -1, attn.heads, head_dim)).flatten(2)
        hidden_states = attention_with_capture(
            query, key, value, attn.heads, attn.scale, self.sink, attention_mask)
        hidden_states = attn.to_out[0](hidden_states.to(query.dtype))
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def capture_diffusers(model: torch.nn.Module, session: CaptureSession, layers: list[str] | None = None) -> Iterator[list[str]]:
    """Install :class:`I2AMAttnProcessor` on ``layers`` (default: every cross-attention layer).

    Restores the original processors on exit, also when sampling raises.
    Yields the captured processor keys.
    """
    original = model.attn_processors
    layers = cross_attention_layers(model) if layers is None else layers
    missing = [k for k in layers if k not in original]
    if missing:
        raise KeyError(f"no attention processor named {missing[0]!r}; known: {list(original)[:4]} ...")
    if not layers:
        raise ValueError("no cross-attention layers to capture: does the model take an encoder_hidden_states context?")
    with swapped_processors(model, layers, lambda layer: I2AMAttnProcessor(session, layer)):
        yield layers


@contextmanager
def swapped_processors(model: torch.nn.Module, layers: list[str], make: Callable[[str], object]) -> Iterator[None]:
    """Replace the processors keyed by ``layers`` with ``make(layer name)``; restore all originals on exit."""
    original = model.attn_processors
    model.set_attn_processor({k: (make(k.removesuffix(".processor")) if k in layers else p) for k, p in original.items()})
    try:
        yield
    finally:
        model.set_attn_processor(original)
