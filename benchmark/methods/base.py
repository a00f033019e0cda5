"""The attribution-method contract: how a method of the method leaderboard reads a stored sample.

A method is registered in :data:`benchmark.registry.METHODS` by a factory (:data:`MethodFactory`): given what
is known of one (task, model) before its evaluation samples are read (:class:`MethodContext`), it returns the
methods to score, by the label they are shown under (none, one, or several variants). Each :class:`Method`
gives the raw maps of a stored sample, which :func:`benchmark.methods.compare.compare_methods` scores on both
sides with IMACS and the segmentation scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from benchmark.analysis.segmentation import segmentation_scores
from benchmark.results.sample_maps import SampleMaps
from benchmark.scoring.imacs import imacs, imacs_from_prepared
from benchmark.scoring.terms import map_segmentation

SCORES = ("imacs", "miou", "ap", "pixel_acc")  # per side: imacs_g, miou_g, ... imacs_r, ...


@dataclass(frozen=True)
class MethodContext:
    """One (task, model) as a method factory sees it.

    ``label``: the method's registered label; ``calibration``: the first half of the model's samples (the
    evaluation half is scored), for methods that choose something (heads) on data; ``random_init``: the model is
    a randomly initialised copy, a baseline that methods which choose something skip; ``lam`` / ``thr``: IMACS's
    lambda and threshold; ``top_k``: the fraction of (layer, head) pairs top-k methods keep;
    ``other_captures``: protocol label -> sample id -> folder of another capture of the same model and sample
    (one-pass attribution).
    """

    label: str
    calibration: list[SampleMaps]
    random_init: bool = False
    lam: float = 3.0
    thr: float = 0.4
    top_k: float = 0.25
    other_captures: Mapping[str, Mapping[str, Path]] = field(default_factory=dict)

    def shown(self, label: str | None = None) -> str:
        """``label`` (default: the registered one) as the leaderboard shows it for this model."""
        label = self.label if label is None else label
        return f"{label} (random-init copy)" if self.random_init else label


class Method(ABC):
    """One attribution method as it reads a stored sample."""

    @abstractmethod
    def maps(self, sample: SampleMaps) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
        """(generated, reference) raw maps of ``sample``: (h, w) on any grid, any non-negative scale (scoring
        min-max normalises and resizes them to the mask); a side is None where the method has no map for it.
        None: the method has nothing for this sample (no row)."""

    def side_scores(self, raw: torch.Tensor | None, mask: torch.Tensor | None, side: str, lam: float,
                    thr: float) -> dict[str, float]:
        """``imacs_<side>``, ``miou_<side>``, ``ap_<side>``, ``pixel_acc_<side>`` of one side's raw map against
        its mask (H, W) in {0, 1}; {} without a mask or with an empty or full one; NaN where the map is missing
        or constant (no attribution)."""
        keys = [f"{k}_{side}" for k in SCORES]
        if not has_mask(mask):
            return {}
        seg = map_segmentation(raw, mask) if raw is not None else None
        if seg is None:
            return dict.fromkeys(keys, np.nan)
        return dict(zip(keys, (imacs(raw, mask, lam, thr).as_float(), seg.miou, seg.average_precision,
                               seg.pixel_accuracy)))


def has_mask(mask: torch.Tensor | None) -> bool:
    """A mask a side can be scored against: present, neither empty nor full."""
    return mask is not None and 0 < float(mask.mean()) < 1


def constant_map_scores(mask: torch.Tensor, side: str, lam: float) -> dict[str, float]:
    """The scores of a map equal everywhere (all ones: every pixel predicted as foreground) against ``mask``."""
    ones = torch.ones_like(mask)
    seg = segmentation_scores(ones.numpy(), mask.numpy() > 0.5, threshold=0.5)
    return dict(zip([f"{k}_{side}" for k in SCORES], (imacs_from_prepared(ones, mask, lam).as_float(), seg.miou,
                                                        seg.average_precision, seg.pixel_accuracy)))


MethodFactory = Callable[[MethodContext], "dict[str, Method]"]
"""A registry target: the methods to score on one (task, model), by shown label (:meth:`MethodContext.shown`)."""
