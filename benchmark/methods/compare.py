"""The attribution-method leaderboard: every method scored on the same stored captures.

Methods are the entries of :data:`benchmark.registry.METHODS` (a module each
under ``benchmark/methods/``, contract in :mod:`benchmark.methods.base`),
scored on both sides (generated maps against x_g, reference maps against x_r):
I2AM all heads; I2AM top-k heads ranked by the supervised or the label-free
relevance (calibrated on the first half of a model's samples,
evaluated on the disjoint second half); ConceptAttention-style output-space
maps for joint-attention transformers (stored as ``cg/concept`` / ``cr/concept``);
and two baselines any method must beat: a uniform map, and the maps of a
randomly initialised copy of the model (a run model with
``options: {random_init: <seed>}``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.analysis.bootstrap import bootstrap_mean, summarise_means
from benchmark.analysis.resampling import Resampling
from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD
from benchmark.methods.base import Method, MethodContext
from benchmark.registry import METHODS
from benchmark.results.sample_maps import SampleMaps

TOP_K = 0.25  # fraction of all (layer, head) pairs


ALL_HEADS = METHODS.label("i2am")
CONCEPT = METHODS.label("concept")
UNIFORM = METHODS.label("uniform")


def methods_of(context: MethodContext, names: Sequence[str] | None = None) -> dict[str, Method]:
    """The methods to score on one (task, model), by shown label: every registered method's factory (or those
    of ``names``), in registration order."""
    entries = METHODS.ordered() if names is None else [METHODS.entry(n) for n in names]
    out: dict[str, Method] = {}
    for e in entries:
        out.update(METHODS.get(e.name)(replace(context, label=e.label)))
    return out


def compare_methods(samples: dict[tuple[str, str], list[Path]], random_init_models: set[str],
                    lam: float = DEFAULT_LAMBDA, thr: float = DEFAULT_THRESHOLD, top_k: float = TOP_K,
                    other_captures: dict[tuple[str, str], dict[str, dict[str, Path]]] | None = None,
                    methods: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """samples: (task, model) -> stored sample folders. Returns a tidy frame
    (task, model, method, sample_id, metric, value) and example generated-side maps per (task, model).
    ``other_captures``: (task, model) -> method label -> sample id -> sample folder of another capture of the
    same model and sample (one-pass attribution). ``methods``: registry names of the methods to score
    (default: every one in :data:`~benchmark.registry.METHODS`).

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
        context = MethodContext("", calib, model in random_init_models, lam, thr, top_k,
                                (other_captures or {}).get((task, model), {}))
        scored = methods_of(context, methods)
        for m in evaluation:
            region, reference = m.get("mask/region"), m.get("mask/reference")
            if not m.meta.get("reference_side", True):
                reference = None
            for label, method in scored.items():
                got = method.maps(m)
                if got is None:
                    continue
                g, r = got
                vals = {**method.side_scores(g, region, "g", lam, thr),
                        **method.side_scores(r, reference, "r", lam, thr)}
                rows += [{"task": task, "model": model, "method": label, "sample_id": m.meta["sample_id"],
                          "metric": metric, "value": float(value)} for metric, value in vals.items()]
                if m is evaluation[0]:
                    examples.setdefault((task, model), {})[label] = g
    return pd.DataFrame(rows, columns=["task", "model", "method", "sample_id", "metric", "value"]), examples


def summarise(frame: pd.DataFrame, resampling: Resampling = Resampling()) -> pd.DataFrame:
    """Per (task, model, method, metric): mean [bootstrap CI] and n (:func:`summarise_means`)."""
    return summarise_means(frame, ["task", "model", "method", "metric"], resampling)


def paired_differences(per_sample: pd.DataFrame, resampling: Resampling = Resampling()) -> pd.DataFrame:
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
        c = bootstrap_mean(diff, resampling)
        rows.append({"task": task, "model": model, "method": method, "metric": metric, "mean": c.mean,
                     "ci_low": c.ci_low, "ci_high": c.ci_high, "n": c.n})
    return pd.DataFrame(rows, columns=["task", "model", "method", "metric", "mean", "ci_low", "ci_high", "n"])
