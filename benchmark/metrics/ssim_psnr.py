"""Per-sample SSIM and PSNR (torchmetrics), plus versions restricted to a binary mask.

All functions take images as float tensors (B, C, H, W) with values in [0, 1]
(``data_range = 1``) and compute in float64.

SSIM convention. The per-pixel SSIM map is torchmetrics'
(``structural_similarity_index_measure(..., return_full_image=True)``,
Gaussian window sigma = 1.5, 11x11, K1 = 0.01, K2 = 0.03), computed with the
window as two 1-D passes (it is separable: 22 instead of 121 multiply-adds per
pixel and moment, which matters at 1024x1024; equal to torchmetrics' map to
float64 rounding, tested). torchmetrics fills
the window at the border by reflect padding and its own scalar averages the
whole map; scikit-image (and Wang et al.'s reference code) instead averages
only pixels whose window lies inside the image. We follow the latter: SSIM is
the mean of the map over the interior, i.e. with ``SSIM_BORDER`` = 5 pixels
cropped on every side, which equals ``skimage.metrics.structural_similarity(
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
Masked SSIM averages the same map over mask pixels inside that interior, so
an all-ones mask gives exactly :func:`ssim`.

Empty masks. In the batch API a sample whose mask (after the interior crop,
for SSIM) selects no pixel gets NaN and ``empty=True`` in
:class:`MaskedScores` instead of raising, so one empty mask does not abort a
benchmark run; aggregate with a NaN-aware mean and report the count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

SSIM_SIGMA = 1.5
# Radius of torchmetrics' Gaussian window: int(3.5 * sigma + 0.5) (same truncation as scipy/skimage).
SSIM_BORDER = int(3.5 * SSIM_SIGMA + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03

__all__ = ["SSIM_BORDER", "MaskedScores", "psnr", "ssim", "ssim_map", "masked_psnr", "masked_ssim"]


@dataclass(frozen=True, eq=False)
class MaskedScores:
    """Per-sample masked scores.

    Attributes:
        values: float64 tensor (B,); NaN where the mask selected no pixel.
        empty: bool tensor (B,); True where the mask selected no pixel.
        n_pixels: int64 tensor (B,); number of pixel positions averaged.
    """

    values: torch.Tensor
    empty: torch.Tensor
    n_pixels: torch.Tensor


def _check_images(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if preds.shape != target.shape:
        raise ValueError(f"preds and target shapes differ: {tuple(preds.shape)} vs {tuple(target.shape)}")
    if preds.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(preds.shape)}")
    for name, img in (("preds", preds), ("target", target)):
        if not torch.is_floating_point(img):
            raise TypeError(f"{name}: expected a float tensor in [0, 1], got dtype {img.dtype}")
        if img.numel() and (float(img.min()) < 0.0 or float(img.max()) > 1.0):
            raise ValueError(f"{name}: expected values in [0, 1], got [{float(img.min()):.4g}, {float(img.max()):.4g}]")
    return preds.double(), target.double()


def _check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    b, _, h, w = images.shape
    if mask.shape != (b, 1, h, w):
        raise ValueError(f"expected mask of shape {(b, 1, h, w)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must be binary (bool or values in {0, 1})")
        mask = mask != 0
    return mask


def psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB (higher is better); ``inf`` for identical images.

    Args:
        preds, target: float (B, C, H, W) in [0, 1].

    Returns:
        float64 tensor (B,): ``10 log10(1 / MSE)`` with the MSE over C, H, W.
    """
    p, t = _check_images(preds, target)
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim_map(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torchmetrics' per-pixel SSIM map, float64 (B, C, H, W); border pixels use reflect padding.

    Args:
        preds, target: float (B, C, H, W) in [0, 1], H and W >= 2 * SSIM_BORDER + 1.
    """
    p, t = _check_images(preds, target)
    if min(p.shape[-2:]) < 2 * SSIM_BORDER + 1:
        raise ValueError(f"SSIM needs H, W >= {2 * SSIM_BORDER + 1}, got {tuple(p.shape[-2:])}")
    r, b = SSIM_BORDER, len(p)
    x = torch.arange(-r, r + 1, dtype=p.dtype, device=p.device)
    g = torch.exp(-((x / SSIM_SIGMA) ** 2) / 2)
    g = g / g.sum()
    moments = F.pad(torch.cat([p, t, p * p, t * t, p * t]), (r, r, r, r), mode="reflect")
    c = moments.shape[1]
    moments = F.conv2d(moments, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    mu_p, mu_t, pp, tt, pt = F.conv2d(moments, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c).split(b)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    var_p, var_t = (pp - mu_p**2).clamp(min=0.0), (tt - mu_t**2).clamp(min=0.0)
    cov = pt - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def _interior(x: torch.Tensor) -> torch.Tensor:
    return x[..., SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER]


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample SSIM in [-1, 1] (higher is better), skimage convention (module docstring).

    Args:
        preds, target: float (B, C, H, W) in [0, 1], H and W >= 11.

    Returns:
        float64 tensor (B,): mean of the interior SSIM map over channels and pixels.
    """
    return _interior(ssim_map(preds, target)).mean(dim=(1, 2, 3))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> MaskedScores:
    """Per-sample mean of ``values`` (B, C, H, W) over channels and the pixels of a bool ``mask`` (B, 1, H, W)."""
    n_pix = mask.flatten(1).sum(dim=1)
    empty = n_pix == 0
    mean = (values * mask).flatten(1).sum(dim=1) / (n_pix.clamp(min=1) * values.shape[1])
    return MaskedScores(torch.where(empty, torch.full_like(mean, float("nan")), mean), empty, n_pix)


def masked_psnr(preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> MaskedScores:
    """Per-sample PSNR of the MSE over mask pixels (all channels).

    Args:
        preds, target: float (B, C, H, W) in [0, 1].
        mask: (B, 1, H, W), bool or {0, 1}; True/1 selects a pixel.

    Returns:
        :class:`MaskedScores` with ``10 log10(1 / MSE_mask)`` in dB; NaN and
        ``empty=True`` for empty masks; ``inf`` where the masked pixels agree exactly.
    """
    p, t = _check_images(preds, target)
    mse = _masked_mean((p - t) ** 2, _check_mask(mask, p))
    return MaskedScores(10.0 * torch.log10(1.0 / mse.values), mse.empty, mse.n_pixels)


def masked_ssim(preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> MaskedScores:
    """Per-sample mean of the SSIM map over mask pixels inside the SSIM interior.

    Args:
        preds, target: float (B, C, H, W) in [0, 1], H and W >= 11.
        mask: (B, 1, H, W), bool or {0, 1}.

    Returns:
        :class:`MaskedScores`; the map is averaged over channels and over mask
        pixels at least ``SSIM_BORDER`` pixels from the image edge. NaN and
        ``empty=True`` when no such pixel exists.
    """
    full = ssim_map(preds, target)
    return _masked_mean(_interior(full), _interior(_check_mask(mask, full)))
