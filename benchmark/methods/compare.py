"""The attribution-method leaderboard: every method scored on the same stored captures.

Methods, scored on both sides (generated maps against x_g, reference maps
against x_r): I2AM all heads; I2AM top-k heads ranked by the supervised or the
label-free relevance (calibrated on the first half of a model's samples,
evaluated on the disjoint second half); ConceptAttention-style output-space
maps for joint-attention transformers (stored as ``cg/concept`` / ``cr/concept``);
and two baselines any method must beat: a uniform map, and the maps of a
randomly initialised copy of the model (a run model with
``options: {random_init: <seed>}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.analysis.bootstrap import bootstrap_mean, summarise_means
from benchmark.analysis.segmentation import segmentation_scores
from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD
from benchmark.scoring.imacs import imacs, imacs_from_prepared
from benchmark.methods.head_selection import aggregate_heads, head_relevance, k_from
from benchmark.results.sample_maps import SampleMaps
from benchmark.registry import METHODS
from benchmark.scoring.terms import map_segmentation, side_map

TOP_K = 0.25  # fraction of all (layer, head) pairs


ALL_HEADS = METHODS.label("i2am")
CONCEPT = METHODS.label("concept")
UNIFORM = METHODS.label("uniform")


@dataclass(frozen=True, eq=False)
class Method:
    """How one attribution method reads a stored sample.

    ``kind``: ``"heads"`` (I2AM from the per-(layer, head) maps: ``heads`` None averages all of them, an
    index array (k, 2) of (layer, head) pairs averages those), ``"concept"`` (the stored output-space maps)
    or ``"uniform"`` (a constant map, the baseline every method must beat).
    """

    kind: str
    heads: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in ("heads", "concept", "uniform"):
            raise ValueError(f"unknown method kind {self.kind!r}")


def _side_scores(raw: torch.Tensor | None, mask: torch.Tensor | None, side: str, lam: float, thr: float,
                 uniform: bool = False) -> dict:
    """IMACS and segmentation scores of one side's raw map (None: a uniform map) against its mask."""
    keys = [f"{k}_{side}" for k in ("imacs", "miou", "ap", "pixel_acc")]
    if mask is None or not 0 < float(mask.mean()) < 1:
        return {}
    if uniform:
        ones = torch.ones_like(mask)
        seg = segmentation_scores(ones.numpy(), mask.numpy() > 0.5, threshold=0.5)
        return dict(zip(keys, (imacs_from_prepared(ones, mask, lam).as_float(), seg.miou, seg.average_precision,
                               seg.pixel_accuracy)))
    seg = map_segmentation(raw, mask) if raw is not None else None
    if seg is None:
        return dict.fromkeys(keys, np.nan)
    return dict(zip(keys, (imacs(raw, mask, lam, thr).as_float(), seg.miou, seg.average_precision, seg.pixel_accuracy)))


def _method_maps(m: SampleMaps, method: Method) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(generated, reference) raw maps of one method on one sample; (None, None) for the uniform map."""
    if method.kind == "uniform":
        return None, None
    if method.kind == "concept":
        return m.get("cg/concept"), m.get("cr/concept")
    lh_g, lh_r = m.get("g/layer_heads"), side_map(m, "r", "layer_heads")
    if method.heads is None:
        return lh_g.mean((0, 1)), (None if lh_r is None else lh_r.mean((0, 1)))
    return aggregate_heads(lh_g, method.heads), (None if lh_r is None else aggregate_heads(lh_r, method.heads))


def compare_methods(samples: dict[tuple[str, str], list[Path]], random_init_models: set[str],
                    lam: float = DEFAULT_LAMBDA, thr: float = DEFAULT_THRESHOLD, top_k: float = TOP_K,
                    other_captures: dict[tuple[str, str], dict[str, dict[str, Path]]] | None = None,
                    ) -> tuple[pd.DataFrame, dict]:
    """samples: (task, model) -> stored sample folders. Returns a tidy frame
    (task, model, method, sample_id, metric, value) and example generated-side maps per (task, model).
    ``other_captures``: (task, model) -> method label -> sample id -> sample folder of another capture of the
    same model and sample (one-pass attribution); scored as I2AM all heads on the same evaluation samples.

    Reference-side scores (``*_r``) need a reference mask and more than one reference token; top-k
    methods use the heads ranked on the generated side for both sides.
    """
    rows, examples = [], {}
    for (task, model), dirs in sorted(samples.items()):
        loaded = [SampleMaps.load(d / "maps.npz") for d in dirs]
        loaded = [m for m in loaded if "g/layer_heads" in m.arrays and "mask/region" in m.arrays
                  and 0 < m.arrays["mask/region"].mean() < 1]
        if len(loaded) < 4:
            continue
        calib, evaluation = loaded[: len(loaded) // 2], loaded[len(loaded) // 2 :]
        random_init = model in random_init_models
        methods = {ALL_HEADS: Method("heads")}
        if "cg/concept" in calib[0].arrays:
            methods[CONCEPT] = Method("concept")
        if not random_init:
            lh0 = calib[0].get("g/layer_heads")
            k = k_from(top_k, lh0.shape[0] * lh0.shape[1])
            for score in ("supervised", "label_free"):
                ranking = head_relevance([m.get("g/layer_heads") for m in calib],
                                         [m.get("mask/region") for m in calib], score, lam, thr)
                methods[f"{METHODS.label('i2am_top_k').replace('top-k', f'top-{k}')} ({score.replace('_', '-')})"] = \
                    Method("heads", ranking.top(k))
            methods[UNIFORM] = Method("uniform")
        for m in evaluation:
            region, reference = m.get("mask/region"), m.get("mask/reference")
            if not m.meta.get("reference_side", True):
                reference = None
            for name, method in methods.items():
                g, r = _method_maps(m, method)
                uniform = method.kind == "uniform"
                vals = {**_side_scores(g, region, "g", lam, thr, uniform),
                        **_side_scores(r, reference, "r", lam, thr, uniform)}
                label = f"{name} (random-init copy)" if random_init else name
                for metric, value in vals.items():
                    rows.append({"task": task, "model": model, "method": label, "sample_id": m.meta["sample_id"],
                                 "metric": metric, "value": float(value)})
                if m is evaluation[0]:
                    examples.setdefault((task, model), {})[label] = g
            for label, by_id in (other_captures or {}).get((task, model), {}).items():
                folder = by_id.get(m.meta["sample_id"])
                if folder is None:
                    continue
                g, r = _method_maps(SampleMaps.load(folder / "maps.npz"), Method("heads"))
                vals = {**_side_scores(g, region, "g", lam, thr), **_side_scores(r, reference, "r", lam, thr)}
                rows += [{"task": task, "model": model, "method": label, "sample_id": m.meta["sample_id"],
                          "metric": metric, "value": float(value)} for metric, value in vals.items()]
                if m is evaluation[0]:
                    examples.setdefault((task, model), {})[label] = g
    return pd.DataFrame(rows, columns=["task", "model", "method", "sample_id", "metric", "value"]), examples


def summarise(frame: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per (task, model, method, metric): mean [bootstrap 95% CI] and n (:func:`summarise_means`)."""
    return summarise_means(frame, ["task", "model", "method", "metric"], n_boot)


def paired_differences(per_sample: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Per (task, model, method other than I2AM all heads, metric): bootstrap mean of the per-sample difference
    to I2AM all heads on the same samples (random-init copies have nothing to pair with and are skipped)."""
    rows = []
    base = per_sample[per_sample.method == ALL_HEADS].set_index(["task", "model", "sample_id", "metric"])["value"]
    for (task, model, method, metric), g in per_sample[per_sample.method != ALL_HEADS].groupby(
            ["task", "model", "method", "metric"], sort=False):
        ref = base.reindex(pd.MultiIndex.from_frame(g[["task", "model", "sample_id", "metric"]]))
        diff = g["value"].to_numpy(float) - ref.to_numpy(float)
        diff = diff[np.isfinite(diff)]
        if len(diff) < 2:
            continue
        c = bootstrap_mean(diff, n_boot=n_boot, seed=0)
        rows.append({"task": task, "model": model, "method": method, "metric": metric, "mean": c.mean,
                     "ci_low": c.ci_low, "ci_high": c.ci_high, "n": c.n})
    return pd.DataFrame(rows, columns=["task", "model", "method", "metric", "mean", "ci_low", "ci_high", "n"])
