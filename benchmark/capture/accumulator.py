"""Streaming I2AM accumulators (torchmetrics-like: declared state, in-place update, exact merge).

Definitions (DESIGN.md, "The maps, precisely"), for one cross-attention call
with logits S of shape (N heads, Q = h_l*w_l generated positions, K reference
tokens):

* generated side, per call: softmax of S over the QUERY axis (each reference
  token spreads one unit of attribution over generated positions), then the
  mean over kept reference tokens -> (N, Q). Read literally, eq. (4)+(7) would
  average a key-axis softmax over keys, which is the constant 1/K; the
  released code does what is done here.
* reference side, per call: the ordinary attention probabilities (softmax over
  the KEY axis), dropped tokens removed afterwards, then the mean over
  generated positions -> (N, K). Literal eq. (12)+(15) is constant likewise.
* eq. (17) restricts that mean to the inpainting region (``region_mask``).

Reduction happens as the calls arrive: sums over the steps of each time group
(eq. 10; one group gives eq. 5), heads and layers kept apart, so memory depends
on layers x heads x positions x groups and never on the number of steps.
Each layer's generated-side map is resized (bicubic, clamped at 0, as the
released code does) to the latent grid before heads and layers are averaged
(eq. 6, 11, 14). On the reference side the generated axes are averaged away;
that mean is taken over the resized grid through the resize's exact linear
adjoint (a weight per layer position), so no per-token resize is needed. The
per-token clamp of bicubic overshoot is not applied there: it would make the
reduction depend on each step's full attention tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from benchmark.capture.tokens import TokenLayout

MAP_LEVELS = ("ulam", "tlam", "hlam", "llam", "sram")


def layer_grid(n_queries: int, latent_grid: tuple[int, int]) -> tuple[int, int]:
    """The (h_l, w_l) grid of a layer with ``n_queries`` positions, from the latent grid and stride-2 steps."""
    h, w = latent_grid
    for k in range(8):
        hh, ww = math.ceil(h / 2**k), math.ceil(w / 2**k)
        if hh * ww == n_queries:
            return hh, ww
    raise ValueError(f"cannot map {n_queries} query positions onto latent grid {latent_grid} by stride-2 downsampling")


@lru_cache(maxsize=64)
def _resize_operator(src: tuple[int, int], dst: tuple[int, int], device: str) -> torch.Tensor:
    """Matrix R (dst_h*dst_w, src_h*src_w) with R @ vec(x) = vec(bicubic_resize(x)) (no clamp)."""
    n = src[0] * src[1]
    eye = torch.eye(n, device=device, dtype=torch.float32).view(n, 1, *src)
    return resize_maps(eye, dst, clamp=False).reshape(n, -1).T.contiguous()


def resize_maps(maps: torch.Tensor, size: tuple[int, int], clamp: bool = True) -> torch.Tensor:
    """Bicubic resize of (..., h, w) maps to (..., *size); clamped at 0 unless ``clamp`` is False."""
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    if clamp:
        x = x.clamp_min(0)
    return x.reshape(*lead, *size)


@dataclass(frozen=True)
class LayerInfo:
    grid: tuple[int, int]
    heads: int
    tokens: int  # kept reference tokens


class I2AMAccumulator:
    """Accumulates I2AM state for a batch of B samples over one sampling run.

    Args:
        latent_grid: (h, w) of the generated latent.
        tokens: the adapter's reference-token layout.
        num_steps: T, the number of sampling steps (for time groups).
        num_groups: T_group of eq. (10); 1 keeps only the time-integrated sum.
        levels: which maps are needed; ``tlam`` needs groups, ``sram`` keeps a
            (Q_l, K) sum per layer.
        region_mask: optional (B, 1, h, w) or (B, h, w) weights in [0, 1] at
            the latent grid, the inpainting region of eq. (17).
    """

    def __init__(self, latent_grid: tuple[int, int], tokens: TokenLayout, num_steps: int, num_groups: int = 1,
                 levels: tuple[str, ...] = MAP_LEVELS, region_mask: torch.Tensor | None = None):
        unknown = set(levels) - set(MAP_LEVELS)
        if unknown:
            raise ValueError(f"unknown map levels {sorted(unknown)}; choose from {MAP_LEVELS}")
        if not 1 <= num_groups <= num_steps:
            raise ValueError(f"num_groups must be in 1..num_steps ({num_steps}), got {num_groups}")
        self.latent_grid = tuple(latent_grid)
        self.tokens = tokens
        self.num_steps, self.num_groups = num_steps, num_groups
        self.levels = tuple(levels)
        if region_mask is not None:
            region_mask = region_mask.reshape(region_mask.shape[0], -1).float()
            if region_mask.shape[1] != self.latent_grid[0] * self.latent_grid[1]:
                raise ValueError(f"region_mask must be at the latent grid {self.latent_grid}")
        self.region_mask = region_mask
        self.layers: dict[str, LayerInfo] = {}
        # Declared state: per layer sums; see the module docstring.
        self.g: dict[str, torch.Tensor] = {}  # (B, G, N, Q_l)
        self.r: dict[str, torch.Tensor] = {}  # (B, G, N, K)
        self.rm: dict[str, torch.Tensor] = {}  # (B, G, N, K), eq. (17)
        self.sr: dict[str, torch.Tensor] = {}  # (B, Q_l, K)
        self.calls: dict[str, torch.Tensor] = {}  # (G,) updates per group
        # Derived constants (not state): kept-token positions, per-layer reduction weights.
        self._kept_cache: dict = {}
        self._weights: dict[str, torch.Tensor] = {}
        self._region_weights: dict[str, torch.Tensor] = {}

    # --- update ---------------------------------------------------------------------------------
    def group_of(self, step: int) -> int:
        if not 0 <= step < self.num_steps:
            raise IndexError(f"step {step} outside 0..{self.num_steps - 1}")
        return step * self.num_groups // self.num_steps

    @torch.no_grad()
    def update(self, layer: str, scores: torch.Tensor, probs: torch.Tensor, step: int) -> None:
        """Add one call of ``layer`` at sampling ``step``: scores and probs (B, N, Q, K_all), conditional rows only."""
        b, n, q, k_all = scores.shape
        kept = self._kept(k_all, scores.device)
        group = self.group_of(step)
        info = self.layers.get(layer)
        if info is None:
            n_kept = kept.stop - kept.start if isinstance(kept, slice) else len(kept)
            info = LayerInfo(layer_grid(q, self.latent_grid), n, n_kept)
            self._init_layer(layer, info, b, scores.device)
        elif (info.heads, info.grid[0] * info.grid[1]) != (n, q):
            raise ValueError(f"layer {layer}: shape changed between calls ({info} vs heads={n}, queries={q})")
        self.calls[layer][group] += 1
        # Every reduction runs over the full, contiguous token axis; dropped tokens are removed from the
        # small reduced results (or weighted 0), which is the same as dropping them after the softmax.
        # Generated side: softmax over the query axis, mean over kept reference tokens.
        self.g[layer][:, group] += torch.matmul(scores.float().softmax(dim=-2), self._token_weights(k_all, kept, scores.device))
        if not self.tokens.reference_side:
            return
        p_key = probs.float()  # (B, N, Q, K_all), softmax over keys
        self.r[layer][:, group] += self._take(torch.matmul(self._weights[layer], p_key), kept)
        if layer in self._region_weights:
            w = self._region_weights[layer][:, None, None, :]  # (B, 1, 1, Q)
            self.rm[layer][:, group] += self._take(torch.matmul(w, p_key)[..., 0, :], kept)
        if "sram" in self.levels:
            self.sr[layer] += self._take(p_key.sum(1), kept)

    def _token_weights(self, n_tokens: int, kept, device) -> torch.Tensor:
        """(K_all,) weights: 1 / n_kept on kept tokens, 0 on dropped ones."""
        key = ("w", n_tokens, str(device))
        if key not in self._kept_cache:
            w = torch.zeros(n_tokens, device=device)
            w[kept] = 1.0
            self._kept_cache[key] = w / w.sum()
        return self._kept_cache[key]

    def _kept(self, n_tokens: int, device):
        """Kept token positions: a slice when contiguous (a view, no copy), else an index tensor."""
        key = (n_tokens, str(device))
        if key not in self._kept_cache:
            idx = self.tokens.kept_index(n_tokens, device)
            contiguous = len(idx) > 0 and bool((idx.diff() == 1).all()) if len(idx) > 1 else len(idx) == 1
            self._kept_cache[key] = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        return self._kept_cache[key]

    @staticmethod
    def _take(x: torch.Tensor, kept) -> torch.Tensor:
        return x[..., kept] if isinstance(kept, slice) else x.index_select(-1, kept)

    def _init_layer(self, layer: str, info: LayerInfo, b: int, device) -> None:
        if self.region_mask is not None and self.region_mask.shape[0] != b:
            raise ValueError(f"region_mask has {self.region_mask.shape[0]} rows, attention batch has {b}")
        self.layers[layer] = info
        g, q, k, n = self.num_groups, info.grid[0] * info.grid[1], info.tokens, info.heads
        zeros = lambda *s: torch.zeros(*s, device=device, dtype=torch.float32)  # noqa: E731
        self.g[layer] = zeros(b, g, n, q)
        self.calls[layer] = torch.zeros(g, dtype=torch.long)
        if self.tokens.reference_side:
            self.r[layer] = zeros(b, g, n, k)
            self._weights[layer] = self._adjoint_weights(info, device)
            if self.region_mask is not None:
                self.rm[layer] = zeros(b, g, n, k)
                self._region_weights[layer] = self._adjoint_weights(info, device, self.region_mask.to(device))
            if "sram" in self.levels:
                self.sr[layer] = zeros(b, q, k)

    def _adjoint_weights(self, info: LayerInfo, device, region: torch.Tensor | None = None) -> torch.Tensor:
        """Weights w with sum_q w[q] x[q] = mean over the latent grid of (region * Resize(x))."""
        op = _resize_operator(info.grid, self.latent_grid, str(device))  # (hw, Q_l)
        hw = op.shape[0]
        if region is None:
            return op.sum(0) / hw
        return region @ op / hw  # (B, Q_l)

    # --- merge / state --------------------------------------------------------------------------
    def _config(self) -> tuple:
        return (self.latent_grid, self.tokens, self.num_steps, self.num_groups, self.levels)

    def merge(self, other: "I2AMAccumulator") -> "I2AMAccumulator":
        """Add another shard's state (e.g. other steps of the same samples) in place; exact."""
        if self._config() != other._config():
            raise ValueError(f"cannot merge accumulators with different configs: {self._config()} vs {other._config()}")
        for layer, info in other.layers.items():
            if layer not in self.layers:
                self.layers[layer] = info
                self._weights.update({k: v for k, v in other._weights.items() if k == layer})
                self._region_weights.update({k: v for k, v in other._region_weights.items() if k == layer})
                for name in ("g", "r", "rm", "sr", "calls"):
                    src = getattr(other, name)
                    if layer in src:
                        getattr(self, name)[layer] = src[layer].clone()
                continue
            if self.layers[layer] != info:
                raise ValueError(f"layer {layer} differs between shards: {self.layers[layer]} vs {info}")
            for name in ("g", "r", "rm", "sr", "calls"):
                mine, theirs = getattr(self, name), getattr(other, name)
                if layer in theirs:
                    mine[layer] += theirs[layer].to(mine[layer].device)
        return self

    def state_bytes(self) -> int:
        """Bytes held by the declared state (for the memory benchmark)."""
        return sum(t.numel() * t.element_size() for d in (self.g, self.r, self.rm, self.sr) for t in d.values())

    # --- maps -----------------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)

    def _check(self) -> None:
        if not self.layers:
            raise RuntimeError("no attention was captured: were the capture layers installed and the model run?")

    def generated_maps(self) -> dict[str, torch.Tensor]:
        """Generated-side maps on the latent grid (h, w), raw (not normalised).

        ulam (B, h, w); tlam (B, G, h, w); hlam (B, N, h, w); llam (B, L, h, w);
        with hlam also layer_heads (B, L, N, h, w), each (layer, head) apart.
        """
        self._check()
        out: dict[str, torch.Tensor] = {}
        # Each (layer, head) map is resized once; every level is a mean of these.
        resized = [resize_maps(self._grid(l, self.g[l].sum(1)), self.latent_grid) for l in self.layers]  # (B, N_l, h, w)
        per_layer_heads = torch.stack(resized, 1) if self._same_heads() else None
        per_layer = [r.mean(1) for r in resized]
        out["ulam"] = torch.stack(per_layer, 1).mean(1)  # mean over heads then layers = eq. (6)
        if "llam" in self.levels:
            out["llam"] = torch.stack(per_layer, 1)
        if "hlam" in self.levels:
            if per_layer_heads is None:
                raise ValueError("HLAM needs the same number of heads in every captured layer")
            out["hlam"] = per_layer_heads.mean(1)
            out["layer_heads"] = per_layer_heads  # (B, L, N, h, w): for head selection
        if "tlam" in self.levels:
            out["tlam"] = torch.stack(
                [resize_maps(self._grid(l, self.g[l]), self.latent_grid).mean(2) for l in self.layers], 1).mean(1)
        return out

    def reference_maps(self, restricted: bool = False) -> dict[str, torch.Tensor]:
        """Reference-side maps on the token grid (h_I, w_I), raw; ``restricted`` applies eq. (17).

        ulam (B, h_I, w_I); tlam (B, G, h_I, w_I); hlam (B, N, h_I, w_I); llam (B, L, h_I, w_I).
        Empty when the token layout has no reference side.
        """
        self._check()
        if not self.tokens.reference_side:
            return {}
        src = self.rm if restricted else self.r
        if restricted and not src:
            raise ValueError("no region_mask was given, so the eq. (17) restricted map does not exist")
        grid = self.tokens.grid
        stacked = torch.stack([src[l] for l in self.layers], 1) if self._same_heads() else None  # (B, L, G, N, K)
        per_layer = torch.stack([src[l].sum(1).mean(1) for l in self.layers], 1)  # (B, L, K)
        b = per_layer.shape[0]
        out = {"ulam": per_layer.mean(1).view(b, *grid)}
        if "llam" in self.levels:
            out["llam"] = per_layer.view(b, -1, *grid)
        if "hlam" in self.levels:
            if stacked is None:
                raise ValueError("HLAM needs the same number of heads in every captured layer")
            out["hlam"] = stacked.sum(2).mean(1).view(b, -1, *grid)
            out["layer_heads"] = stacked.sum(2).view(b, stacked.shape[1], stacked.shape[3], *grid)
        if "tlam" in self.levels:
            out["tlam"] = torch.stack([src[l].mean(2) for l in self.layers], 1).mean(1).view(b, -1, *grid)
        return out

    def reference_volume(self) -> torch.Tensor:
        """M_r(i, j, x, y) summed over time, mean over heads and layers: (B, h*w, K) on the latent grid.

        Row (a * w + b) is the specific-reference map of generated position (a, b).
        """
        self._check()
        if "sram" not in self.levels or not self.sr:
            raise ValueError("SRAM was not requested (levels) or the layout has no reference side")
        total = None
        for layer, info in self.layers.items():
            op = _resize_operator(info.grid, self.latent_grid, str(self.sr[layer].device))
            part = torch.einsum("pq,bqk->bpk", op, self.sr[layer]) / info.heads
            total = part if total is None else total + part
        return total / len(self.layers)

    def sram(self, a: int, b: int) -> torch.Tensor:
        """Specific-reference map (eq. 16) of latent position (a, b): (B, h_I, w_I)."""
        h, w = self.latent_grid
        if not (0 <= a < h and 0 <= b < w):
            raise IndexError(f"position ({a}, {b}) outside the latent grid {self.latent_grid}")
        vol = self.reference_volume()
        return vol[:, a * w + b].view(vol.shape[0], *self.tokens.grid)

    def _grid(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], *self.layers[layer].grid)

    def _same_heads(self) -> bool:
        return len({info.heads for info in self.layers.values()}) == 1
