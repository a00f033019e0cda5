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
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.capture import I2AMAccumulator
from benchmark.store import write_atomic
from benchmark.capture.joint_capture import OutputSpaceAccumulator


@dataclass
class SampleMaps:
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def get(self, key: str) -> torch.Tensor | None:
        a = self.arrays.get(key)
        return None if a is None else torch.from_numpy(a.astype(np.float32))

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8), **self.arrays)
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "SampleMaps":
        with np.load(path) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            return cls({k: z[k] for k in z.files if k != "__meta__"}, meta)


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
