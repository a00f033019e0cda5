"""Model-card rendering from an evaluation record (hand-made numbers; no generation)."""

import numpy as np

from benchmark.training.evaluate import EXACT_DB, ORACLE_FILL, _f, _paired, _psnr_ci, model_card


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
    assert "| full | 17.00 [16.50, 17.50] | n/a | 15.00 [14.50, 15.50] | 2.00 [1.50, 2.50] |" in card
    assert "| full | 0.70 [0.20, 1.20]; n/a; above in 75% |" in card
    assert "no model that decodes through this VAE" not in card  # bicubic's mean is below the VAE ceiling
    assert "IMACS_r" in card and "| n/a |" in card
    inpainting = model_card("object_inpainting", {**ev, "models": {}})
    assert "f=4" in inpainting and "7 cross-attention layers" in inpainting and "residual" not in inpainting


def test_ci_reports_median_and_samples_exact_to_float_precision():
    c = _psnr_ci([10.0, 12.0, 14.0, 142.0])
    assert np.isclose(c["mean"], 44.5) and c["median"] == 13.0 and c["n_exact"] == 1 and c["n"] == 4
    assert _psnr_ci([EXACT_DB, 20.0])["n_exact"] == 0  # strictly above the threshold


def test_inpainting_card_flags_an_oracle_whose_mean_no_model_can_reach():
    values = [12.0, 13.0, 14.0, 142.0]
    oracle = {"masked_psnr": _psnr_ci(values), "masked_ssim": _c(0.3)}
    model = {"masked_psnr": _psnr_ci([13.0, 14.0, 15.0, 20.0]), "masked_psnr_swapped": _c(10.0), "swap_gap_db": _c(2.0),
             "masked_ssim": _c(0.2), "masked_ssim_swapped": _c(0.1), "imacs_g": _c(0.1), "imacs_r": _c(0.2),
             "minus_baseline_db": {ORACLE_FILL: _paired(np.array([1.0, 1.0, 1.0, -122.0]))}}
    ev = {"n_samples": 4, "models": {"full": model}, "baselines": {ORACLE_FILL: oracle},
          "vae_reconstruction_masked_psnr": _c(15.6)}
    card = model_card("object_inpainting", ev)
    assert f"| baseline: {ORACLE_FILL} | {_f(_psnr_ci(values))} | 13.50 |" in card
    assert "exact to float precision (above 100 dB) on 1 of 4 samples" in card
    assert "no model that decodes through this VAE can reach it on the mean" in card
    assert "| full | -29.75" in card and "; 1.00; above in 75% |" in card
