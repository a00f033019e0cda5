"""Capture for non-diffusers attention modules (CompVis ``ldm`` ``CrossAttention`` and alike).

StableVITON and the original Paint-by-Example code use modules with ``to_q``,
``to_k``, ``to_v``, ``to_out``, ``heads`` (and ``scale``) whose forward is
``forward(x, context=None, mask=None)``. Their forward is replaced, for the
duration of the context manager only, by one that runs the attention through
:func:`attention_with_capture` (fused kernel for the output, explicit
probabilities for the captured rows); nothing else in the model changes.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from benchmark.capture.attention import attention_with_capture
from benchmark.capture.session import CaptureSession

REQUIRED = ("to_q", "to_k", "to_v", "to_out", "heads")


def ldm_attention_modules(model: torch.nn.Module, name_filter: Callable[[str], bool]) -> list[str]:
    """Names of submodules that look like ldm attention and pass ``name_filter`` (e.g. ``attn2``)."""
    return [name for name, m in model.named_modules()
            if all(hasattr(m, a) for a in REQUIRED) and name_filter(name)]


def _forward(layer: str, session: CaptureSession):
    sink = session.sink(layer)

    def forward(self, x, context=None, mask=None, **kwargs):
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        scale = getattr(self, "scale", (q.shape[-1] // self.heads) ** -0.5)
        additive = None
        if mask is not None:  # ldm: boolean keep-mask over keys, (B, K)
            additive = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
            additive = additive.masked_fill(~mask.bool(), -torch.finfo(q.dtype).max).view(mask.shape[0], 1, 1, -1)
        out = attention_with_capture(q, k, v, self.heads, scale, sink, additive)
        return self.to_out(out)

    return forward


@contextmanager
def capture_ldm(model: torch.nn.Module, session: CaptureSession,
                name_filter: Callable[[str], bool] = lambda n: n.endswith("attn2")) -> Iterator[list[str]]:
    """Patch the forward of the selected attention modules; restored on exit. Yields their names."""
    names = ldm_attention_modules(model, name_filter)
    if not names:
        raise ValueError("no module with to_q/to_k/to_v/to_out/heads matched the filter")
    patched = []
    try:
        for name in names:
            module = model.get_submodule(name)
            module.forward = types.MethodType(_forward(name, session), module)
            patched.append(module)
        yield names
    finally:
        for module in patched:
            del module.forward  # the instance attribute; the class forward is back
