"""Per-sample attribution maps on disk: a compressed ``.npz`` with its metadata.

Keys (raw, un-normalised maps; h, w latent grid; h_I, w_I token grid):
``g/ulam`` (h, w), ``g/tlam`` (G, h, w), ``g/hlam`` (N, h, w), ``g/llam`` (L, h, w);
``r/...`` the same levels on (h_I, w_I); ``rm/...`` reference side restricted to
the inpainting region (eq. 17); ``sr/volume`` (h*w, h_I*w_I) float16, the
specific-reference maps of every latent position (eq. 16);
``mask/region`` (H, W) and ``mask/reference`` (Hr, Wr) uint8, so any
(lambda, threshold) can be rescored later without regenerating.
Joint-attention models add the ConceptAttention-style output-space maps
``cg/concept`` (h, w: share of each generated token's output-space softmax on
the reference object's tokens, weighted by ``mask/reference`` on the token
grid) and ``cr/concept`` (h_I, w_I: the softmax averaged over the region).

Storage precision (``store.maps_dtype``, :data:`MAPS_DTYPES`): with ``float16`` every normalisable map (a float
array under ``g/``, ``r/``, ``rm/``, ``cg/``, ``cr/`` of shape (..., h, w), except the ULAMs) is stored min-max
normalised per (h, w) map as float16 in [0, 1], with its float32 (min, max - min) under ``__range__/<key>``
(..., 2); :meth:`SampleMaps.load` restores float32 raw maps (``lo + q * span``), so every reader sees raw maps
whatever the precision, within 2**-12 of each map's range. The ULAMs (``*/ulam``: the maps a job's IMACS and
segmentation scores are defined on, 1 of 158 maps at SD-1.5 scale) stay float32, so that every stored score
recomputes exactly from the store; masks (uint8) and ``sr/volume`` (float16 already) are stored as they are.
``float32`` stores the maps as computed.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.capture import I2AMAccumulator
from benchmark.store import write_atomic

if TYPE_CHECKING:  # joint capture imports diffusers; reading stored maps (the report) does not need it
    from benchmark.capture.joint_capture import OutputSpaceAccumulator


@dataclass
class SampleMaps:
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def get(self, key: str) -> torch.Tensor | None:
        a = self.arrays.get(key)
        return None if a is None else torch.from_numpy(a.astype(np.float32))

    def save(self, path: Path, maps_dtype: str = "float32") -> Path:
        """Write the maps to ``path`` (compressed ``.npz``, atomically) at ``maps_dtype`` (:data:`MAPS_DTYPES`;
        a run stores at its ``store.maps_dtype``, float16 by default); ``self`` is left as it is (a job's scores
        come from the in-memory float32 maps). Returns ``path``."""
        if maps_dtype not in MAPS_DTYPES:
            raise ValueError(f"maps_dtype must be one of {list(MAPS_DTYPES)}, got {maps_dtype!r}")
        arrays = dict(self.arrays)
        if maps_dtype == "float16":
            for key in [k for k, a in arrays.items() if normalisable(k, a)]:
                arrays[key], arrays[f"{RANGE_PREFIX}{key}"] = _to_float16(arrays[key])
        meta = {**self.meta, "maps_dtype": maps_dtype}
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        write_atomic(path, buf.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "SampleMaps":
        """The maps of ``path`` as raw float32 maps (float16-stored maps restored from their ranges)."""
        with np.load(path) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__" and not k.startswith(RANGE_PREFIX)}
            for key in z.files:
                if key.startswith(RANGE_PREFIX):
                    name = key[len(RANGE_PREFIX):]
                    arrays[name] = _from_float16(arrays[name], z[key])
            return cls(arrays, meta)


MAPS_DTYPES = ("float16", "float32")  # ``store.maps_dtype``: the precision maps are stored in
MAP_PREFIXES = ("g/", "r/", "rm/", "cg/", "cr/")  # the normalisable maps: raw (..., h, w) float arrays
SCORED_LEVEL = "/ulam"  # the maps job-time scores are defined on (benchmark.scoring.terms.side_map): kept float32
RANGE_PREFIX = "__range__/"  # float16 storage: per (h, w) map, float32 (min, max - min)


def normalisable(key: str, a: np.ndarray) -> bool:
    """True for a raw map that float16 storage normalises: a float (..., h, w) array under :data:`MAP_PREFIXES`,
    other than a scored ULAM."""
    return key.startswith(MAP_PREFIXES) and not key.endswith(SCORED_LEVEL) and a.dtype.kind == "f" and a.ndim >= 2


def _to_float16(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., h, w) float -> (q float16 in [0, 1], (..., 2) float32 [min, max - min]) per (h, w) map; a constant map
    is all zeros with span 0 and comes back exactly."""
    flat = a.astype(np.float32).reshape(*a.shape[:-2], -1)
    lo, hi = flat.min(-1, keepdims=True), flat.max(-1, keepdims=True)
    span = hi - lo
    q = np.divide(flat - lo, span, out=np.zeros_like(flat), where=span > 0)
    return q.reshape(a.shape).astype(np.float16), np.concatenate([lo, span], -1).astype(np.float32)


def _from_float16(q: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_float16`: (..., h, w) float32 raw maps ``min + q * span``."""
    lo, span = ranges[..., 0, None, None], ranges[..., 1, None, None]
    return (lo + q.astype(np.float32) * span).astype(np.float32)


def _on_grid(mask: torch.Tensor | None, grid: tuple[int, int], batch_size: int) -> torch.Tensor:
    """(B, 1, H, W) mask -> (B, h*w) area weights on ``grid``; all ones when the task has no such mask."""
    if mask is None:
        return torch.ones(batch_size, grid[0] * grid[1])
    return F.interpolate(mask.float().cpu(), size=tuple(grid), mode="area").flatten(1)


def concept_maps(concept: OutputSpaceAccumulator, acc: I2AMAccumulator, batch: dict) -> dict[str, torch.Tensor]:
    """ConceptAttention-style maps (raw): ``cg/concept`` (B, h, w) and ``cr/concept`` (B, h_I, w_I)."""
    b = len(batch["sample_id"])
    ref_w = _on_grid(batch.get("reference_mask"), acc.tokens.grid, b)
    gen_w = _on_grid(batch.get("region_mask"), acc.latent_grid, b)
    return {"cg/concept": concept.generated_map(ref_w).cpu().view(b, *acc.latent_grid),
            "cr/concept": concept.reference_map(gen_w).cpu().view(b, *acc.tokens.grid)}


def split_accumulator(acc: I2AMAccumulator, batch: dict, meta: dict,
                      concept: OutputSpaceAccumulator | None = None) -> list[SampleMaps]:
    """One :class:`SampleMaps` per sample of the batch the accumulator captured (plus output-space maps)."""
    gen = acc.generated_maps()
    extra = concept_maps(concept, acc, batch) if concept is not None and concept.volume is not None else {}
    ref = acc.reference_maps()
    refm = acc.reference_maps(restricted=True) if acc.region_mask is not None and ref else {}
    volume = acc.reference_volume() if ("sram" in acc.levels and ref) else None
    out = []
    for i, sid in enumerate(batch["sample_id"]):
        arrays = {f"g/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in gen.items()}
        arrays.update({f"r/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in ref.items()})
        arrays.update({f"rm/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in refm.items()})
        arrays.update({k: v[i].numpy().astype(np.float32) for k, v in extra.items()})
        if volume is not None:
            arrays["sr/volume"] = volume[i].cpu().numpy().astype(np.float16)
        for key, name in (("region_mask", "mask/region"), ("reference_mask", "mask/reference")):
            if batch.get(key) is not None:
                arrays[name] = (batch[key][i, 0].cpu().numpy() > 0.5).astype(np.uint8)
        out.append(SampleMaps(arrays, {
            **meta, "sample_id": sid, "layers": acc.layer_names, "latent_grid": list(acc.latent_grid),
            "token_grid": list(acc.tokens.grid), "dropped_tokens": list(acc.tokens.drop),
            "steps": acc.num_steps, "time_groups": acc.num_groups, "levels": list(acc.levels),
            "heads": [acc.layers[l].heads for l in acc.layer_names],
            "reference_side": acc.tokens.reference_side,
        }))
    return out
