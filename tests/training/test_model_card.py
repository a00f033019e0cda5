"""Model-card rendering from an evaluation record (hand-made numbers; no generation)."""

import numpy as np

from benchmark.training.evaluate import _paired, model_card


def _c(mean):
    return {"mean": mean, "ci_low": mean - 0.5, "ci_high": mean + 0.5, "n": 4}


def test_paired_difference_counts_strictly_positive_samples():
    p = _paired(np.array([1.0, -1.0, 2.0, 0.0]))
    assert np.isclose(p["mean"], 0.5) and p["share_positive"] == 0.5 and p["n"] == 4


def test_super_resolution_card_describes_its_own_vae_unet_and_residual():
    model = {"masked_psnr": _c(17.0), "masked_psnr_swapped": _c(15.0), "swap_gap_db": _c(2.0),
             "masked_ssim": _c(0.5), "masked_ssim_swapped": _c(0.4), "imacs_g": _c(0.1), "imacs_r": None,
             "minus_baseline_db": {"bicubic": {**_c(0.7), "share_positive": 0.75}}}
    ev = {"n_samples": 4, "models": {"full": model}, "baselines": {"bicubic": {"masked_psnr": _c(16.3),
                                                                             "masked_ssim": _c(0.45)}},
          "vae_reconstruction_masked_psnr": _c(23.0)}
    card = model_card("super_resolution", ev)
    assert "f=2, 4 latent channels" in card and "texture_scale=2" in card
    assert "4 cross-attention layers" in card and "latent residual over `lr_up`" in card
    assert "| full | 17.00 [16.50, 17.50] | 15.00 [14.50, 15.50] | 2.00 [1.50, 2.50] |" in card
    assert "| full | 0.70 [0.20, 1.20]; above in 75% |" in card
    assert "IMACS_r" in card and "| n/a |" in card
    inpainting = model_card("object_inpainting", {**ev, "models": {}})
    assert "f=4" in inpainting and "7 cross-attention layers" in inpainting and "residual" not in inpainting
