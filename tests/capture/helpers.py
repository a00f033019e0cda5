"""Tiny models, independent logits and a brute-force I2AM reference for the capture tests.

The brute force is the definition of docs/maps.md read
literally, in float64 and with loops: explicit logits from the modules' own
projections, a softmax over the QUERY axis for the generated side, the
key-axis softmax for the reference side, every (layer, head, token) map
resized on its own. It shares no code with ``benchmark.capture``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from benchmark.capture.attention import captured_probabilities


def tiny_unet(cross_dim: int = 16, heads: int = 2) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=heads, norm_num_groups=8,
    ).eval()


class Recorder:
    """Stands in for an accumulator: keeps every captured call as (layer, step, probs, lse)."""

    def __init__(self, num_steps: int):
        self.num_steps = num_steps
        self.calls: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []

    def add_attention(self, layer, q, k, scale, step, additive_mask=None, lse=None):
        self.update(layer, *captured_probabilities(q, k, scale, additive_mask, lse), step)

    def update(self, layer, probs, lse, step):
        self.calls.append((layer, step, probs.clone(), lse.clone()))


class LogitRecorder:
    """Forward pre-hooks on diffusers cross-attention modules that recompute their logits independently.

    For every call of a hooked module with a conditional half it stores
    (layer, step, S) with S = (x W_q)(c W_k)^T * scale per head, float64,
    conditional rows only (the second half of a CFG batch of ``2 * n_samples``).
    """

    def __init__(self, model: torch.nn.Module, n_samples: int, step_of):
        self.n_samples, self.step_of = n_samples, step_of
        self.calls: list[tuple[str, int, torch.Tensor]] = []
        self.handles = [
            module.register_forward_pre_hook(self._hook(name), with_kwargs=True)
            for name, module in model.named_modules()
            if getattr(module, "is_cross_attention", False)
        ]

    def _hook(self, name):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            ctx = kwargs["encoder_hidden_states"]
            b = x.shape[0]
            rows = slice(b - self.n_samples, b)
            q = module.to_q(x[rows]).double()
            k = module.to_k(ctx[rows]).double()
            q = q.view(q.shape[0], q.shape[1], module.heads, -1).transpose(1, 2)
            k = k.view(k.shape[0], k.shape[1], module.heads, -1).transpose(1, 2)
            self.calls.append((name, self.step_of(), q @ k.transpose(-1, -2) * module.scale))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def bicubic(x: torch.Tensor, size) -> torch.Tensor:
    """Resize (h, w) -> size with torch bicubic, no clamp (float64)."""
    if tuple(x.shape) == tuple(size):
        return x.double()
    return F.interpolate(x[None, None].double(), size=size, mode="bicubic", align_corners=False)[0, 0]


def grid_of(n_queries: int, latent) -> tuple[int, int]:
    """The stride-2 grid with ``n_queries`` positions under ``latent`` (independent of the package)."""
    h, w = latent
    while h * w != n_queries:
        if h * w < n_queries:
            raise ValueError(f"{n_queries} queries do not fit {latent}")
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def brute_force_levels(calls, latent, kept, num_steps, groups, region=None, positions=(), key_keep=None,
                       grid=None):
    """Literal I2AM maps at every level from explicit float64 logits.

    calls: [(layer, step, S (B, N, Q, K_all))] or [(layer, step, S, P)],
    conditional rows only; P, when given, is the key-axis probabilities for
    the reference side (e.g. a block cut out of a larger softmax), otherwise
    the softmax of S over its keys. kept: indices of kept tokens. region:
    (B, h, w) eq. (17) weights. positions: latent positions whose
    specific-reference maps are wanted. key_keep: optional (B, K_all) bool,
    the keys a mask leaves visible; a hidden token gets no attention, and no
    generated-side attribution either. grid: n_queries -> (h_l, w_l)
    (default: stride-2 halving of the latent grid).

    Returns generated maps ``g/ulam`` (B, h, w), ``g/hlam`` (B, N, h, w),
    ``g/llam`` (B, L, h, w), ``g/tlam`` (B, G, h, w); reference maps
    ``r/...`` and ``rm/...`` of the same levels over the K kept tokens; and
    ``sr`` {position: (B, K)}.
    """
    grid = grid or (lambda n: grid_of(n, latent))
    layers = list(dict.fromkeys(c[0] for c in calls))
    b, n_heads = calls[0][2].shape[:2]
    n_layers, n_tok = len(layers), len(kept)
    h, w = latent
    g = torch.zeros(b, n_layers, n_heads, groups, h, w, dtype=torch.float64)
    r = torch.zeros(b, n_layers, n_heads, groups, n_tok, dtype=torch.float64)
    rm = torch.zeros_like(r)
    sr = {pos: torch.zeros(b, n_tok, dtype=torch.float64) for pos in positions}
    for li, layer in enumerate(layers):
        mine = [c for c in calls if c[0] == layer]
        lg = grid(mine[0][2].shape[2])
        for i in range(b):
            for n in range(n_heads):
                g_sum = [torch.zeros(lg, dtype=torch.float64) for _ in range(groups)]
                for call in mine:
                    step, s = call[1], call[2]
                    grp = step * groups // num_steps
                    logits = s[i, n].double()
                    # generated side: softmax over the query axis, then the mean over kept tokens
                    p_query = logits.softmax(0)
                    if key_keep is not None:
                        p_query[:, ~key_keep[i]] = 0
                    g_sum[grp] += p_query[:, kept].mean(1).view(lg)
                    # reference side: the key-axis softmax, each token's map resized on its own
                    if len(call) > 3:
                        p_key = call[3][i, n].double()
                    else:
                        masked = logits.clone()
                        if key_keep is not None:
                            masked[:, ~key_keep[i]] = float("-inf")
                        p_key = masked.softmax(1)
                    p_key = p_key[:, kept]
                    for j in range(n_tok):
                        up = bicubic(p_key[:, j].view(lg), latent)
                        r[i, li, n, grp, j] += up.mean()
                        if region is not None:
                            rm[i, li, n, grp, j] += (up * region[i]).mean()
                        for pos in positions:
                            sr[pos][i, j] += up[pos] / (n_heads * n_layers)
                for grp in range(groups):
                    g[i, li, n, grp] = bicubic(g_sum[grp], latent)
    g_all = g.sum(3)  # time-integrated, then each (layer, head) map clamped at 0 after its resize
    out = {
        "g/ulam": g_all.clamp_min(0).mean((1, 2)),
        "g/hlam": g_all.clamp_min(0).mean(1),
        "g/llam": g_all.clamp_min(0).mean(2),
        "g/tlam": g.clamp_min(0).mean((1, 2)),
        "sr": sr,
    }
    for name, x in (("r", r), ("rm", rm)):
        out[f"{name}/ulam"] = x.sum(3).mean((1, 2))
        out[f"{name}/hlam"] = x.sum(3).mean(1)
        out[f"{name}/llam"] = x.sum(3).mean(2)
        out[f"{name}/tlam"] = x.mean((1, 2))
    return out


def brute_force_maps(calls, latent, kept, grid, num_steps, groups, region=None, position=None):
    """The unified-level maps of :func:`brute_force_levels` from (layer, step, S, P) calls.

    Returns ``g`` (B, h, w), ``tlam`` (B, G, h, w), ``r`` and ``rm`` (B, K),
    ``sr`` (B, K) at ``position`` (zeros without a region or a position).
    """
    positions = () if position is None else (tuple(position),)
    out = brute_force_levels(calls, latent, kept, num_steps, groups, region=region, positions=positions, grid=grid)
    b, k = out["r/ulam"].shape
    return {"g": out["g/ulam"], "tlam": out["g/tlam"], "r": out["r/ulam"], "rm": out["rm/ulam"],
            "sr": out["sr"][positions[0]] if positions else torch.zeros(b, k, dtype=torch.float64)}


def assert_maps_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to ``rtol`` relative, entries near 0 judged against the map's largest value."""
    expected = expected.double()
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=rtol * expected.abs().max().item())
