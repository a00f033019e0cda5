"""Tiny models and a brute-force I2AM reference for the capture tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel


def tiny_unet(cross_dim: int = 16, heads: int = 2) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=heads, norm_num_groups=8,
    ).eval()


class Recorder:
    """Keeps every captured (scores, probs) tensor: the brute-force side of the tests."""

    def __init__(self, num_steps: int):
        self.num_steps = num_steps
        self.calls: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []

    def update(self, layer, scores, probs, step):
        self.calls.append((layer, step, scores.clone(), probs.clone()))


def bicubic(x: torch.Tensor, size) -> torch.Tensor:
    """Resize (h, w) -> size with torch bicubic, no clamp."""
    return F.interpolate(x[None, None].double(), size=size, mode="bicubic", align_corners=False)[0, 0]


def brute_force_maps(calls, latent, kept, grid_of, num_steps, groups, region=None, position=None):
    """Literal per-call, per-head, per-token I2AM maps from the stored tensors (float64 loops)."""
    layers = sorted({c[0] for c in calls}, key=[c[0] for c in calls].index)
    h, w = latent
    b = calls[0][2].shape[0]
    out_g = torch.zeros(b, h, w, dtype=torch.float64)
    out_t = torch.zeros(b, groups, h, w, dtype=torch.float64)
    out_r = torch.zeros(b, len(kept), dtype=torch.float64)
    out_rm = torch.zeros(b, len(kept), dtype=torch.float64)
    out_sr = torch.zeros(b, len(kept), dtype=torch.float64)
    for layer in layers:
        mine = [c for c in calls if c[0] == layer]
        n_heads = mine[0][2].shape[1]
        for i in range(b):
            for n in range(n_heads):
                g_sum = 0
                t_sum = [0] * groups
                for _, step, s, p in mine:
                    lg = grid_of(s.shape[2])
                    pq = s[i, n].double().softmax(0)[:, kept].mean(1).view(lg)
                    g_sum = g_sum + pq
                    t_sum[step * groups // num_steps] = t_sum[step * groups // num_steps] + pq
                    pk = p[i, n].double()[:, kept]
                    for j in range(len(kept)):
                        up = bicubic(pk[:, j].view(lg), latent)
                        out_r[i, j] += up.mean() / (n_heads * len(layers))
                        if region is not None:
                            out_rm[i, j] += (up * region[i]).mean() / (n_heads * len(layers))
                        if position is not None:
                            out_sr[i, j] += up[position] / (n_heads * len(layers))
                out_g[i] += bicubic(g_sum, latent).clamp_min(0) / (n_heads * len(layers))
                for gi in range(groups):
                    if not isinstance(t_sum[gi], int):
                        out_t[i, gi] += bicubic(t_sum[gi], latent).clamp_min(0) / (n_heads * len(layers))
    return {"g": out_g, "tlam": out_t, "r": out_r, "rm": out_rm, "sr": out_sr}
