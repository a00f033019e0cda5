"""The attribution-method leaderboard: every method scored on the same stored captures.

Methods (generated side, against x_g): I2AM all heads; I2AM top-k heads ranked by
the supervised or the label-free relevance (calibrated on the first half of a
model's samples, evaluated on the disjoint second half); and two baselines any
method must beat: a uniform map, and I2AM of a randomly initialised copy of the
model (a run model with ``options: {random_init: <seed>}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.analysis.bootstrap import bootstrap_mean
from benchmark.analysis.segmentation import segmentation_scores
from benchmark.imacs import imacs, imacs_from_prepared
from benchmark.methods.head_selection import aggregate_heads, head_relevance, k_from
from benchmark.results.sample_maps import SampleMaps
from benchmark.scoring import map_segmentation

TOP_K = 0.25  # fraction of all (layer, head) pairs


def _scores(raw: torch.Tensor | None, mask: torch.Tensor, lam: float, thr: float, uniform: bool = False) -> dict:
    if uniform:
        ones = torch.ones_like(mask)
        seg = segmentation_scores(ones.numpy(), mask.numpy() > 0.5, threshold=0.5)
        return {"imacs_g": imacs_from_prepared(ones, mask, lam).as_float(), "miou_g": seg.miou,
                "ap_g": seg.average_precision, "pixel_acc_g": seg.pixel_accuracy}
    seg = map_segmentation(raw, mask)
    if seg is None:
        return {"imacs_g": np.nan, "miou_g": np.nan, "ap_g": np.nan, "pixel_acc_g": np.nan}
    return {"imacs_g": imacs(raw, mask, lam, thr).as_float(), "miou_g": seg.miou, "ap_g": seg.average_precision,
            "pixel_acc_g": seg.pixel_accuracy}


def compare_methods(samples: dict[tuple[str, str], list[Path]], random_init_models: set[str], lam: float = 3.0,
                    thr: float = 0.4, top_k: float = TOP_K) -> tuple[pd.DataFrame, dict]:
    """samples: (task, model) -> stored sample folders. Returns a tidy frame
    (task, model, method, sample_id, metric, value) and example maps per (task, model)."""
    rows, examples = [], {}
    for (task, model), dirs in sorted(samples.items()):
        loaded = [SampleMaps.load(d / "maps.npz") for d in dirs]
        loaded = [m for m in loaded if "g/layer_heads" in m.arrays and "mask/region" in m.arrays
                  and 0 < m.arrays["mask/region"].mean() < 1]
        if len(loaded) < 4:
            continue
        calib, evaluation = loaded[: len(loaded) // 2], loaded[len(loaded) // 2 :]
        methods: dict[str, np.ndarray | None] = {"I2AM all heads": None}
        if model not in random_init_models:
            lh0 = calib[0].get("g/layer_heads")
            k = k_from(top_k, lh0.shape[0] * lh0.shape[1])
            for score in ("supervised", "label_free"):
                ranking = head_relevance([m.get("g/layer_heads") for m in calib],
                                         [m.get("mask/region") for m in calib], score, lam, thr)
                methods[f"I2AM top-{k} heads ({score.replace('_', '-')})"] = ranking.top(k)
            methods["uniform map"] = None
        for m in evaluation:
            lh, mask = m.get("g/layer_heads"), m.get("mask/region")
            for name, heads in methods.items():
                if name == "uniform map":
                    vals = _scores(None, mask, lam, thr, uniform=True)
                else:
                    raw = lh.mean((0, 1)) if heads is None else aggregate_heads(lh, heads)
                    vals = _scores(raw, mask, lam, thr)
                label = "I2AM all heads (random-init copy)" if model in random_init_models else name
                for metric, value in vals.items():
                    rows.append({"task": task, "model": model, "method": label, "sample_id": m.meta["sample_id"],
                                 "metric": metric, "value": float(value)})
                if m is evaluation[0]:
                    examples.setdefault((task, model), {})[label] = (
                        None if name == "uniform map" else (lh.mean((0, 1)) if heads is None else aggregate_heads(lh, heads)))
    return pd.DataFrame(rows, columns=["task", "model", "method", "sample_id", "metric", "value"]), examples


def summarise(frame: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    rows = []
    for keys, g in frame.groupby(["task", "model", "method", "metric"], sort=True):
        v = g["value"].to_numpy(dtype=float)
        if not np.isfinite(v).any():
            rows.append(dict(zip(["task", "model", "method", "metric"], keys), mean=np.nan, ci_low=np.nan,
                             ci_high=np.nan, n=0))
            continue
        c = bootstrap_mean(v, n_boot=n_boot, seed=0)
        rows.append(dict(zip(["task", "model", "method", "metric"], keys), mean=c.mean, ci_low=c.ci_low,
                         ci_high=c.ci_high, n=c.n))
    return pd.DataFrame(rows)
