"""Per-sample attribution maps on disk: a compressed ``.npz`` with its metadata.

Keys (raw, un-normalised maps; h, w latent grid; h_I, w_I token grid):
``g/ulam`` (h, w), ``g/tlam`` (G, h, w), ``g/hlam`` (N, h, w), ``g/llam`` (L, h, w);
``r/...`` the same levels on (h_I, w_I); ``rm/...`` reference side restricted to
the inpainting region (eq. 17); ``sr/volume`` (h*w, h_I*w_I) float16, the
specific-reference maps of every latent position (eq. 16);
``mask/region`` (H, W) and ``mask/reference`` (Hr, Wr) uint8, so any
(lambda, threshold) can be rescored later without regenerating.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmark.capture import I2AMAccumulator


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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "SampleMaps":
        with np.load(path) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            return cls({k: z[k] for k in z.files if k != "__meta__"}, meta)


def split_accumulator(acc: I2AMAccumulator, batch: dict, meta: dict) -> list[SampleMaps]:
    """One :class:`SampleMaps` per sample of the batch the accumulator captured."""
    gen = acc.generated_maps()
    ref = acc.reference_maps()
    refm = acc.reference_maps(restricted=True) if acc.region_mask is not None and ref else {}
    volume = acc.reference_volume() if ("sram" in acc.levels and ref) else None
    out = []
    for i, sid in enumerate(batch["sample_id"]):
        arrays = {f"g/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in gen.items()}
        arrays.update({f"r/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in ref.items()})
        arrays.update({f"rm/{k}": v[i].cpu().numpy().astype(np.float32) for k, v in refm.items()})
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
