"""Streaming I2AM accumulators (torchmetrics-like: declared state, in-place update, exact merge).

Definitions (docs/maps.md), for one cross-attention call
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

A call arrives as its key-axis probabilities P and the rows' log-sum-exp L
(what the attention computes anyway). The query-axis softmax needs no second
pass of exponentials: exp(S[q,k] - c) = a_q P[q,k] with a_q = exp(L_q - c), so
its per-token normaliser and the token mean are products with P (see
:meth:`I2AMAccumulator.update`), and one batched product with P gives that
normaliser, the reference side and eq. (17) together.

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

from benchmark.capture.attention import captured_probabilities, stacked_probabilities
from benchmark.capture.tokens import TokenLayout
from benchmark.defaults import MAP_LEVELS
_TINY = torch.finfo(torch.float32).tiny  # guards 0/0 for a token that no query attends (see ``update``)


def layer_grid(n_queries: int, latent_grid: tuple[int, int]) -> tuple[int, int]:
    """The (h_l, w_l) grid of a layer with ``n_queries`` positions, from the latent grid and stride-2 steps."""
    h, w = latent_grid
    for k in range(8):
        hh, ww = math.ceil(h / 2**k), math.ceil(w / 2**k)
        if hh * ww == n_queries:
            return hh, ww
    raise ValueError(f"cannot map {n_queries} query positions onto latent grid {latent_grid} by stride-2 downsampling")


@lru_cache(maxsize=64)
def _resize_axis(src: int, dst: int, device: str) -> torch.Tensor | None:
    """Matrix A (dst, src) of the bicubic resize along one axis (no clamp); None when src == dst (identity).

    Bicubic interpolation is separable, so the 2-D resize of an (h, w) map X is
    A_h X A_w^T: two small matrices (at most latent side x layer side) instead of
    a dense (h*w, h_l*w_l) one. The cache holds only such 1-D matrices.
    """
    if src == dst:
        return None
    eye = torch.eye(src, device=device, dtype=torch.float32).view(src, 1, src, 1)
    return F.interpolate(eye, size=(dst, 1), mode="bicubic", align_corners=False).view(src, dst).T.contiguous()


def _resize_axes(src: tuple[int, int], dst: tuple[int, int], device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(A_h, A_w) with Resize(X) = A_h X A_w^T for (h_l, w_l) -> (h, w) maps; None on an axis that keeps its size."""
    return _resize_axis(src[0], dst[0], str(device)), _resize_axis(src[1], dst[1], str(device))


def resize_columns(x: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize (no clamp) of the maps in the columns of x: (B, h_l*w_l, K) -> (B, h*w, K)."""
    a_h, a_w = _resize_axes(src, dst, x.device)
    y = x.reshape(x.shape[0], *src, x.shape[-1])
    if a_h is not None:
        y = torch.einsum("ai,bijk->bajk", a_h, y)
    if a_w is not None:
        y = torch.einsum("cj,bajk->back", a_w, y)
    return y.reshape(x.shape[0], dst[0] * dst[1], x.shape[-1])


def resize_adjoint(src: tuple[int, int], dst: tuple[int, int], device, region: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Weights w with sum_q w[q] x[q] = sum over the (h, w) grid of region * Resize(x), for (h_l, w_l) maps x.

    region (B, h*w) or None (all ones) -> (B, h_l*w_l), or (h_l*w_l,) without a region.
    """
    a_h, a_w = _resize_axes(src, dst, device)
    if region is None:
        s_h = a_h.sum(0) if a_h is not None else torch.ones(src[0], device=device)
        s_w = a_w.sum(0) if a_w is not None else torch.ones(src[1], device=device)
        return torch.outer(s_h, s_w).reshape(-1)
    r = region.float().reshape(region.shape[0], *dst)
    if a_h is not None:
        r = torch.einsum("bac,ai->bic", r, a_h)
    if a_w is not None:
        r = torch.einsum("bic,cj->bij", r, a_w)
    return r.reshape(region.shape[0], -1)


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


# Calls whose key-axis probabilities have at most this many entries are deferred and batched with the
# other layers of the same shape (``add_attention``): at that size the fixed cost of the twenty-odd
# operations per layer and call is most of what capture costs. Larger calls are reduced at once; their
# cost is arithmetic, which batching does not lower.
BATCH_MAX_ELEMENTS = 1 << 20


class _Bank:
    """State and constants of layers whose calls have one shape, stacked on a leading layer axis L.

    One set of operations updates all of them; each layer's public state is a
    view of its row. g (L, B, G, N, Q); ref (L, B, G, N, R, K) holding r (and
    rm, eq. 17) or None; sr (B, Q, K) or None, the SRAM sum SHARED by every
    layer of this call shape (summed over layers, not kept per layer), a view of sr_all
    (L, B, Q, K_all) when the kept tokens are contiguous (dropped columns then
    collect sums nobody reads, so that the head sum needs no slicing);
    lhs (L, B, N, 1 + R, Q): row 0 takes a_q on each call, rows 1.. are the
    reference-side weights; weights (K_all,): 1 / n_kept on kept tokens, 0 on
    dropped ones; kept: the kept positions (a slice when contiguous, else an
    index tensor).
    """

    __slots__ = ("layers", "shape", "g", "ref", "sr", "sr_all", "lhs", "weights", "kept", "_rows")

    def __init__(self, layers, shape, g, ref, sr, sr_all, lhs, weights, kept):
        self.layers, self.shape = layers, shape  # shape: (B, N, Q, K_all) of one layer's calls
        self.g, self.ref, self.sr, self.sr_all = g, ref, sr, sr_all
        self.lhs, self.weights, self.kept = lhs, weights, kept
        self._rows: dict[int, _Bank] = {}

    def row(self, i: int) -> "_Bank":
        """Layer i alone, as a bank of one whose tensors are views of this one's."""
        if i not in self._rows:
            part = lambda x: None if x is None else x[i:i + 1]  # noqa: E731
            self._rows[i] = _Bank(self.layers[i:i + 1], self.shape, part(self.g), part(self.ref), self.sr,
                                  self.sr_all, part(self.lhs), self.weights, self.kept)
        return self._rows[i]


class I2AMAccumulator:
    """Accumulates I2AM state for a batch of B samples over one sampling run.

    Args:
        latent_grid: (h, w) of the generated latent.
        tokens: the adapter's reference-token layout.
        num_steps: T, the number of sampling steps (for time groups).
        num_groups: T_group of eq. (10); 1 keeps only the time-integrated sum.
        levels: which maps are needed; ``tlam`` needs groups, ``sram`` keeps a
            (B, Q_l, K) float32 sum per distinct layer shape (summed over the
            layers of that shape as it is accumulated: SRAM needs only the
            layer sum). FLUX Kontext at 1024 x 1024 (G = 4096, R = 1024),
            B = 8: one 128 MiB buffer for all 57 layers, not 7.3 GiB.
        region_mask: optional (B, 1, h, w) or (B, h, w) weights in [0, 1] at
            the latent grid, the inpainting region of eq. (17).

    State (per layer): ``g`` (B, G, N, Q_l); where the layout has a reference
    side ``r`` (B, G, N, K), with a region mask also ``rm`` (B, G, N, K), with
    ``sram`` requested also ``sr`` (B, Q_l, K), the same tensor for every
    layer of one call shape (their sum, see ``levels``); ``calls`` (G,) updates per
    group. Nothing else is computed or kept. Reading any of them (or a map)
    first completes the calls still deferred by :meth:`add_attention`.
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
        # Declared state, per layer: views into the banks (see the class docstring).
        self._order: dict[str, None] = {}  # layers in the order of their first call (banks group them by shape)
        self._layers: dict[str, LayerInfo] = {}
        self._g: dict[str, torch.Tensor] = {}
        self._r: dict[str, torch.Tensor] = {}
        self._rm: dict[str, torch.Tensor] = {}
        self._sr: dict[str, torch.Tensor] = {}  # a layer's view of the sum shared by its call shape
        self._sr_shared: dict[tuple, tuple] = {}  # {(B, N, Q, K_all): (LayerInfo, sr, sr_all)}
        self._calls: dict[str, list[int]] = {}
        self._banks: dict[tuple[str, ...], _Bank] = {}
        self._bank_of: dict[str, tuple[_Bank, int]] = {}
        self._kept_cache: dict = {}
        # Deferred calls of one time group, by shape (see ``add_attention``).
        self._pending: dict[tuple, list[tuple]] = {}  # {shapes, scale, dtype, device: [(layer, q, k, lse)]}
        self._pending_layers: set[str] = set()
        self._pending_group: int | None = None

    # --- state (completes deferred calls first) ---------------------------------------------------
    @property
    def layers(self) -> dict[str, LayerInfo]:
        """{layer: LayerInfo} in the order of the layers' first calls."""
        self.flush()
        return {layer: self._layers[layer] for layer in self._order if layer in self._layers}

    @property
    def g(self) -> dict[str, torch.Tensor]:
        """{layer: (B, G, N, Q_l)} generated-side sums."""
        self.flush()
        return self._g

    @property
    def r(self) -> dict[str, torch.Tensor]:
        """{layer: (B, G, N, K)} reference-side sums (mean over the resized latent grid)."""
        self.flush()
        return self._r

    @property
    def rm(self) -> dict[str, torch.Tensor]:
        """{layer: (B, G, N, K)} reference-side sums restricted to the region (eq. 17)."""
        self.flush()
        return self._rm

    @property
    def sr(self) -> dict[str, torch.Tensor]:
        """{layer: (B, Q_l, K)} key-axis probabilities summed over heads, steps AND the layers of the same call
        shape (B, N, Q_l, K_all): layers of one shape share one tensor, their sum (all SRAM needs)."""
        self.flush()
        return self._sr

    def __getstate__(self) -> dict:
        self.flush()  # a pickled accumulator carries its state, not the queries of deferred calls
        return self.__dict__.copy()

    @property
    def calls(self) -> dict[str, torch.Tensor]:
        """Updates per time group: {layer: (G,) int64}."""
        self.flush()
        return {layer: torch.tensor(c, dtype=torch.long) for layer, c in self._calls.items()}

    # --- update ---------------------------------------------------------------------------------
    def group_of(self, step: int) -> int:
        if not 0 <= step < self.num_steps:
            raise IndexError(f"step {step} outside 0..{self.num_steps - 1}")
        return step * self.num_groups // self.num_steps

    @torch.no_grad()
    def add_attention(self, layer: str, q: torch.Tensor, k: torch.Tensor, scale: float, step: int,
                      additive_mask: torch.Tensor | None = None, lse: torch.Tensor | None = None) -> None:
        """Add one call of ``layer`` at ``step`` from its captured (conditional) rows' queries and keys.

        q (B, N, Q, d), k (B, N, K_all, d); ``additive_mask`` broadcasts to
        (B, N, Q, K_all); ``lse`` (B, N, Q) is the rows' log-sum-exp where the
        fused attention kernel returned it. The logits and key-axis
        probabilities are formed here
        (:func:`~benchmark.capture.attention.captured_probabilities`). Small
        calls are deferred until the layer comes round again, the time group
        changes or the state is read, and then reduced together with the other
        layers of the same shape; q, k and lse must not be modified in place
        meanwhile (attention projections never are).
        """
        group = self.group_of(step)
        self._order.setdefault(layer)
        b, n, n_q, _ = q.shape
        n_k = k.shape[-2]
        if additive_mask is not None or b * n * n_q * n_k > BATCH_MAX_ELEMENTS:
            self.update(layer, *captured_probabilities(q, k, scale, additive_mask, lse), step)
            return
        if layer not in self._bank_of:  # fail on a wrong layout now, not when the state is read
            self._kept(n_k, q.device)
            layer_grid(n_q, self.latent_grid)
        if layer in self._pending_layers or group != self._pending_group:
            self.flush()
        key = (tuple(q.shape), tuple(k.shape), float(scale), q.dtype, q.device, lse is None)
        self._pending.setdefault(key, []).append((layer, q, k, lse))
        self._pending_layers.add(layer)
        self._pending_group = group

    @torch.no_grad()
    def flush(self) -> None:
        """Reduce the deferred calls, each set of equal-shape layers at once."""
        if not self._pending:
            return
        pending, group = self._pending, self._pending_group
        self._pending, self._pending_layers, self._pending_group = {}, set(), None
        for (_, _, scale, _, _, no_lse), entries in pending.items():
            layers = tuple(e[0] for e in entries)
            if no_lse:
                q, k = torch.stack([e[1] for e in entries]), torch.stack([e[2] for e in entries])
                probs, lse = captured_probabilities(q, k, scale)
            else:
                probs, lse = stacked_probabilities([e[1] for e in entries], [e[2] for e in entries],
                                                   [e[3] for e in entries], scale)
            self._add(layers, probs, lse, group)

    @torch.no_grad()
    def update(self, layer: str, probs: torch.Tensor, lse: torch.Tensor, step: int) -> None:
        """Add one call of ``layer`` at sampling ``step`` (conditional rows only).

        probs (B, N, Q, K_all): the key-axis softmax of the call's logits S, in
        [0, 1], every token (dropped ones too) included; lse (B, N, Q): the
        rows' log-sum-exp of S over the same keys, so exp(S) = probs * exp(lse).
        """
        group = self.group_of(step)
        self._order.setdefault(layer)
        self._add((layer,), probs[None], lse[None], group)

    @torch.no_grad()
    def update_rows(self, layer: str, probs_of, chunks: list[slice], lse: torch.Tensor, k_all: int,
                    step: int) -> None:
        """:meth:`update` with the probabilities handed over by chunks of rows, never all at once.

        ``probs_of(rows)`` returns (B, N, len(rows), K_all), the key-axis
        probabilities of those query rows as :meth:`update` takes them;
        ``chunks`` are slices covering the Q rows in order; lse (B, N, Q) the
        rows' log-sum-exp. With more than one chunk each chunk is asked for
        twice: the generated side divides by per-token sums over ALL rows
        (Z_k, see :meth:`_reduce`), so it is added in a second pass, once Z is
        complete. The temporaries are those of one chunk plus (B, N, 1 + R, K_all).
        """
        group = self.group_of(step)
        self._order.setdefault(layer)
        if len(chunks) == 1:
            self.update(layer, probs_of(chunks[0]), lse, step)
            return
        b, n, q = lse.shape
        shape = (b, n, q, k_all)
        if layer in self._bank_of:
            owner, j = self._bank_of[layer]
            bank = owner if len(owner.layers) == 1 else owner.row(j)
        else:
            bank = self._new_bank((layer,), shape, lse.device)
        if bank.shape != shape:
            raise ValueError(f"layer {layer}: attention shape changed between calls ({bank.shape} vs {shape}; "
                             "batch, heads, queries, tokens)")
        self._calls[layer][group] += 1
        lse = lse.float()[None]
        lhs = bank.lhs  # the same reduction as _reduce, summed over row chunks
        a = torch.exp(lse - lse.amax(-1, keepdim=True), out=lhs[..., 0, :])
        sums = None
        for rows in chunks:
            p = probs_of(rows).float()[None]  # (1, B, N, c, K_all)
            part = torch.matmul(lhs[..., rows], p)
            sums = part if sums is None else sums.add_(part)
            # the sum over heads head by head: p.sum(2) would be a temporary of 1/N of the chunk
            if bank.sr_all is not None:
                for h in range(n):
                    bank.sr_all[:, rows] += p[0, :, h]
            elif bank.sr is not None:
                for h in range(n):
                    bank.sr[:, rows] += self._take(p[0, :, h], bank.kept)
            del p
        u = (bank.weights / sums[..., 0, :].clamp_min(_TINY)).unsqueeze(-2)  # (1, B, N, 1, K_all)
        g = bank.g[:, :, group]
        for rows in chunks:
            p = probs_of(rows).float()[None]
            g[..., rows].addcmul_(a[..., rows], torch.matmul(u, p.transpose(-1, -2)).squeeze(-2))
            del p
        if bank.ref is not None:
            bank.ref[:, :, group] += self._take(sums[..., 1:, :], bank.kept)

    def _add(self, layers: tuple[str, ...], probs: torch.Tensor, lse: torch.Tensor, group: int) -> None:
        """probs (L, B, N, Q, K_all), lse (L, B, N, Q) of one call of each of ``layers``."""
        bank = self._banks.get(layers)
        if bank is None:
            if any(layer in self._bank_of for layer in layers):  # stacked differently before: one by one
                for i, layer in enumerate(layers):
                    if layer in self._bank_of:
                        owner, j = self._bank_of[layer]
                        self._reduce(owner.row(j), probs[i:i + 1], lse[i:i + 1], group)
                    else:
                        self._reduce(self._new_bank((layer,), probs.shape[1:], probs.device),
                                     probs[i:i + 1], lse[i:i + 1], group)
                return
            bank = self._new_bank(layers, probs.shape[1:], probs.device)
        self._reduce(bank, probs, lse, group)

    def _reduce(self, bank: _Bank, probs: torch.Tensor, lse: torch.Tensor, group: int) -> None:
        if bank.shape != tuple(probs.shape[1:]):
            raise ValueError(f"layer {bank.layers[0]}: attention shape changed between calls ({bank.shape} vs "
                             f"{tuple(probs.shape[1:])}; batch, heads, queries, tokens)")
        for layer in bank.layers:
            self._calls[layer][group] += 1
        probs, lse = probs.float(), lse.float()  # the state is float32 whatever the model's dtype
        # Generated side, the softmax of S over the QUERY axis without a second softmax: with
        # c = max_q lse_q and a_q = exp(lse_q - c) <= 1, exp(S[q,k] - c) = a_q * P[q,k], so the per-token
        # normaliser is Z_k = sum_q a_q P[q,k] and the mean over kept tokens (weights w) is
        # g_q = a_q * sum_k P[q,k] w_k / Z_k. Exact as long as exp(S[q,k] - c) stays in float32 range for
        # each token's best query, i.e. unless a token's largest logit lies some 85 nats below the head's
        # largest row log-sum-exp; a token that no query attends at all (Z_k = 0, e.g. masked out) then
        # adds nothing instead of dividing by zero.
        lhs = bank.lhs
        a = torch.exp(lse - lse.amax(-1, keepdim=True), out=lhs[..., 0, :])
        sums = torch.matmul(lhs, probs)  # (L, B, N, 1 + R, K_all): Z, then the reference-side sums
        u = bank.weights / sums[..., 0, :].clamp_min(_TINY)  # (L, B, N, K_all)
        # u^T P^T rather than P u: a row-vector product is a GEMM, several times faster on CPU than a
        # batched matrix-vector product, and needs no temporary of P's size.
        bank.g[:, :, group].addcmul_(a, torch.matmul(u.unsqueeze(-2), probs.transpose(-1, -2)).squeeze(-2))
        if bank.ref is not None:
            bank.ref[:, :, group] += self._take(sums[..., 1:, :], bank.kept)
        if bank.sr_all is not None and probs.is_contiguous():
            # the sum over heads (and layers) as a product with ones, accumulated straight into the state
            n_layers, b, n, q, k_all = probs.shape
            flat = bank.sr_all.view(b, 1, q * k_all)
            ones = probs.new_ones((1, 1, n)).expand(b, 1, n)
            for i in range(n_layers):
                torch.baddbmm(flat, ones, probs[i].view(b, n, q * k_all), out=flat)
        elif bank.sr is not None:
            bank.sr += self._take(probs.sum((0, 2)), bank.kept)

    @staticmethod
    def _take(x: torch.Tensor, kept) -> torch.Tensor:
        return x[..., kept] if isinstance(kept, slice) else x.index_select(-1, kept)

    def _kept(self, n_tokens: int, device):
        """Kept token positions among ``n_tokens``: a slice when contiguous (a view, no copy), else indices."""
        key = (n_tokens, str(device))
        if key not in self._kept_cache:
            idx = self.tokens.kept_index(n_tokens, device)
            contiguous = len(idx) == 1 or (len(idx) > 1 and bool((idx.diff() == 1).all()))
            self._kept_cache[key] = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        return self._kept_cache[key]

    def _new_bank(self, layers: tuple[str, ...], shape, device) -> _Bank:
        """Zero state for ``layers``, whose calls have ``shape`` (B, N, Q, K_all)."""
        b, n, q, k_all = shape
        if self.region_mask is not None and self.region_mask.shape[0] != b:
            raise ValueError(f"region_mask has {self.region_mask.shape[0]} rows, attention batch has {b}")
        kept = self._kept(k_all, device)
        weights = torch.zeros(k_all, device=device, dtype=torch.float32)
        weights[kept] = 1.0
        info = LayerInfo(layer_grid(q, self.latent_grid), n, int(weights.sum().item()))
        n_layers, k = len(layers), info.tokens
        zeros = lambda *s: torch.zeros(*s, device=device, dtype=torch.float32)  # noqa: E731
        rows, ref, sr, sr_all = [], None, None, None
        if self.tokens.reference_side:
            rows.append(self._adjoint_weights(info, device).expand(b, q))
            if self.region_mask is not None:
                rows.append(self._adjoint_weights(info, device, self.region_mask.to(device)))
            ref = zeros(n_layers, b, self.num_groups, n, len(rows), k)
            if "sram" in self.levels:
                sr, sr_all = self._sram_state(info, tuple(shape), kept, device)
        lhs = zeros(n_layers, b, n, 1 + len(rows), q)
        for i, row in enumerate(rows):
            lhs[:, :, :, 1 + i] = row[None, :, None]
        bank = _Bank(layers, tuple(shape), zeros(n_layers, b, self.num_groups, n, q), ref, sr, sr_all, lhs,
                     weights / info.tokens, kept)
        self._banks[layers] = bank
        for i, layer in enumerate(layers):
            self._layers[layer] = info
            self._bank_of[layer] = (bank, i)
            self._calls[layer] = [0] * self.num_groups
            self._g[layer] = bank.g[i]
            if ref is not None:
                self._r[layer] = ref[i, :, :, :, 0]
                if self.region_mask is not None:
                    self._rm[layer] = ref[i, :, :, :, 1]
            if sr is not None:
                self._sr[layer] = sr
        return bank

    def _sram_state(self, info: LayerInfo, shape: tuple, kept, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The SRAM sum shared by the layers of call shape (B, N, Q, K_all): (sr (B, Q, K), sr_all (B, Q, K_all) or
        None), zero when first asked for. SRAM needs only the sum over layers of the per-layer sums divided by
        the heads, so layers of one shape (same grid, heads and tokens) add into one buffer."""
        if shape not in self._sr_shared:
            b, _, q, k_all = shape
            if isinstance(kept, slice):  # dropped columns collect sums nobody reads; the head sum needs no slicing
                sr_all = torch.zeros(b, q, k_all, device=device)
                sr = sr_all[..., kept]
            else:
                sr_all, sr = None, torch.zeros(b, q, info.tokens, device=device)
            self._sr_shared[shape] = (info, sr, sr_all)
        _, sr, sr_all = self._sr_shared[shape]
        return sr, sr_all

    def _adjoint_weights(self, info: LayerInfo, device, region: torch.Tensor | None = None) -> torch.Tensor:
        """Weights w with sum_q w[q] x[q] = mean over the latent grid of (region * Resize(x))."""
        hw = self.latent_grid[0] * self.latent_grid[1]
        return resize_adjoint(info.grid, self.latent_grid, device, region) / hw  # (Q_l,) or (B, Q_l)

    # --- merge / state --------------------------------------------------------------------------
    def _config(self) -> tuple:
        return (self.latent_grid, self.tokens, self.num_steps, self.num_groups, self.levels)

    def merge(self, other: "I2AMAccumulator") -> "I2AMAccumulator":
        """Add another shard's state (e.g. other steps of the same samples) in place; exact."""
        if self._config() != other._config():
            raise ValueError(f"cannot merge accumulators with different configs: {self._config()} vs {other._config()}")
        if (self.region_mask is None) != (other.region_mask is None):
            raise ValueError("cannot merge an accumulator with an eq. (17) region_mask and one without")
        self.flush()
        other.flush()
        for layer in other.layers:
            theirs, j = other._bank_of[layer]
            self._order.setdefault(layer)
            if layer not in self._bank_of:
                self._new_bank((layer,), theirs.shape, theirs.g.device)
            mine, i = self._bank_of[layer]
            if mine.shape != theirs.shape:
                raise ValueError(f"layer {layer} differs between shards: {mine.shape} vs {theirs.shape}")
            for name in ("g", "ref"):
                src = getattr(theirs, name)
                if src is not None:
                    getattr(mine, name)[i] += src[j].to(getattr(mine, name).device)
            self._calls[layer] = [x + y for x, y in zip(self._calls[layer], other._calls[layer])]
        for shape, (_, sr, _) in other._sr_shared.items():  # created above for every layer shape of other
            mine = self._sr_shared[shape][1]
            mine += sr.to(mine.device)
        return self

    def state_bytes(self) -> int:
        """Bytes held by the declared state (for the memory benchmark)."""
        self.flush()
        tensors = [t for d in (self._g, self._r, self._rm) for t in d.values()]
        tensors += [sr for _, sr, _ in self._sr_shared.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

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
        per_layer = [r.mean(1) for r in resized]
        out["ulam"] = torch.stack(per_layer, 1).mean(1)  # mean over heads then layers = eq. (6)
        if "llam" in self.levels:
            out["llam"] = torch.stack(per_layer, 1)
        if "hlam" in self.levels:
            if not self._same_heads():
                raise ValueError("HLAM needs the same number of heads in every captured layer")
            per_layer_heads = torch.stack(resized, 1)
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
        per_layer = torch.stack([src[l].sum(1).mean(1) for l in self.layers], 1)  # (B, L, K)
        b = per_layer.shape[0]
        out = {"ulam": per_layer.mean(1).view(b, *grid)}
        if "llam" in self.levels:
            out["llam"] = per_layer.view(b, -1, *grid)
        if "hlam" in self.levels:
            if not self._same_heads():
                raise ValueError("HLAM needs the same number of heads in every captured layer")
            stacked = torch.stack([src[l] for l in self.layers], 1)  # (B, L, G, N, K)
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
        for info, sr, _ in self._sr_shared.values():  # each the sum over the layers of one call shape
            part = resize_columns(sr, info.grid, self.latent_grid) / info.heads
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
