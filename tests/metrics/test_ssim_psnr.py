from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from benchmark.metrics.ssim_psnr import SSIM_BORDER, masked_psnr, masked_ssim, psnr, ssim, ssim_map


def image_pair(seed: int, b: int = 2, c: int = 3, h: int = 24, w: int = 30, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    preds = (target + 0.15 * torch.randn(b, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    return preds.to(dtype), target.to(dtype)


def skimage_ssim(p: torch.Tensor, t: torch.Tensor, full: bool = False):
    return sk_ssim(
        p.double().numpy(), t.double().numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1, channel_axis=0, full=full,
    )


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-6)])
def test_ssim_and_psnr_match_skimage(dtype: torch.dtype, tol: float) -> None:
    preds, target = image_pair(0, dtype=dtype)
    ours_ssim, ours_psnr = ssim(preds, target), psnr(preds, target)
    assert ours_ssim.shape == ours_psnr.shape == (2,)
    for i in range(2):
        assert float(ours_ssim[i]) == pytest.approx(skimage_ssim(preds[i], target[i]), abs=tol)
        ref_psnr = sk_psnr(target[i].double().numpy(), preds[i].double().numpy(), data_range=1)
        assert float(ours_psnr[i]) == pytest.approx(ref_psnr, rel=1e-6)


def test_masked_psnr_hand_computed() -> None:
    target = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    preds = target.clone()
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    preds[..., :2, :] = 0.1  # error 0.1 on every masked pixel and channel -> MSE 0.01 -> 20 dB
    preds[..., 3, 3] = 1.0  # a large error outside the mask must not count
    out = masked_psnr(preds, target, mask)
    assert float(out.values[0]) == pytest.approx(20.0, abs=1e-9)
    assert int(out.n_pixels[0]) == 8 and not bool(out.empty[0])


def test_masked_psnr_matches_direct_numpy() -> None:
    preds, target = image_pair(1, b=3)
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(3, 1, 24, 30, generator=g) > 0.6
    out = masked_psnr(preds, target, mask.float())
    for i in range(3):
        m = mask[i, 0].numpy()
        err = (preds[i].numpy() - target[i].numpy())[:, m]
        assert float(out.values[i]) == pytest.approx(10 * math.log10(1.0 / np.mean(err**2)), rel=1e-9)
    # An all-ones mask is plain PSNR.
    full = masked_psnr(preds, target, torch.ones(3, 1, 24, 30, dtype=torch.bool))
    torch.testing.assert_close(full.values, psnr(preds, target))


def test_masked_ssim_averages_skimage_map_over_mask_interior() -> None:
    preds, target = image_pair(2, b=2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(2, 1, 24, 30, generator=g) > 0.5
    out = masked_ssim(preds, target, mask)
    for i in range(2):
        _, smap = skimage_ssim(preds[i], target[i], full=True)  # (C, H, W)
        keep = mask[i, 0].numpy().copy()
        keep[:SSIM_BORDER, :] = keep[-SSIM_BORDER:, :] = False
        keep[:, :SSIM_BORDER] = keep[:, -SSIM_BORDER:] = False
        assert float(out.values[i]) == pytest.approx(smap[:, keep].mean(), abs=1e-10)
        assert int(out.n_pixels[i]) == int(keep.sum())
    full = masked_ssim(preds, target, torch.ones(2, 1, 24, 30))
    torch.testing.assert_close(full.values, ssim(preds, target))


def test_empty_masks_give_nan_and_flag() -> None:
    preds, target = image_pair(3, b=3)
    mask = torch.ones(3, 1, 24, 30, dtype=torch.bool)
    mask[0] = False
    mask[1] = False
    mask[1, 0, 0, :] = True  # only a border row: empty for SSIM (outside its interior), not for PSNR
    p, s = masked_psnr(preds, target, mask), masked_ssim(preds, target, mask)
    assert p.empty.tolist() == [True, False, False]
    assert s.empty.tolist() == [True, True, False]
    assert math.isnan(float(p.values[0])) and math.isfinite(float(p.values[1]))
    assert math.isnan(float(s.values[0])) and math.isnan(float(s.values[1])) and math.isfinite(float(s.values[2]))


def test_input_validation() -> None:
    preds, target = image_pair(4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(preds * 255, target)
    with pytest.raises(ValueError, match="mask of shape"):
        masked_psnr(preds, target, torch.ones(2, 3, 24, 30))
    with pytest.raises(ValueError, match="binary"):
        masked_ssim(preds, target, torch.full((2, 1, 24, 30), 0.5))
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(preds[..., :8, :8], target[..., :8, :8])
    assert torch.isinf(psnr(target, target)).all()


def test_ssim_map_equals_torchmetrics_full_image_map() -> None:
    """The separable window gives torchmetrics' own per-pixel map (reflect-padded border included)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    preds, target = image_pair(3, dtype=torch.float64)
    _, expected = structural_similarity_index_measure(preds, target, gaussian_kernel=True, sigma=1.5, data_range=1.0,
                                                      reduction="none", return_full_image=True)
    torch.testing.assert_close(ssim_map(preds, target), expected, atol=1e-12, rtol=0)
