"""A per-sample quality metric: the mean absolute error between output and ground truth (lower is better)."""

import torch


def mean_abs_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """``pred``, ``target`` (1, 3, H, W) in [0, 1] -> mean |pred - target| in [0, 1]."""
    return float((pred - target).abs().mean())
