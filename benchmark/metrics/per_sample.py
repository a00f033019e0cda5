"""Per-sample quality metrics a job records, one function each, as :data:`benchmark.registry.SAMPLE_METRICS`
names them: ``(pred, target, mask) -> float`` with ``pred``, ``target`` (1, 3, H, W) in [0, 1] and ``mask``
(1, 1, H, W) binary or None (torchmetrics underneath, :mod:`benchmark.metrics.ssim_psnr`)."""

from __future__ import annotations

import torch

from benchmark.metrics import ssim_psnr


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    return float(ssim_psnr.psnr(pred, target)[0])


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    return float(ssim_psnr.ssim(pred, target)[0])


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    return float(ssim_psnr.masked_psnr(pred, target, mask).values[0])


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    return float(ssim_psnr.masked_ssim(pred, target, mask).values[0])
