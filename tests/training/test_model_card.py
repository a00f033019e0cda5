"""Model-card rendering from an evaluation record (hand-made numbers; no generation).

Expected table cells are written out literally from numbers computed by hand, so a change in
rounding, sign or layout shows here."""

import numpy as np

from benchmark.training.evaluate import EXACT_DB, ORACLE_FILL, _paired, _psnr_ci, model_card


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
    # SSIM and IMACS have three decimals: 0.5 - 0.5 = 0 prints 0.000, 0.4 - 0.5 prints -0.100; IMACS_r n/a
    assert ("| full | 17.00 [16.50, 17.50] | n/a | 15.00 [14.50, 15.50] | 2.00 [1.50, 2.50] | "
            "0.500 [0.000, 1.000] | 0.400 [-0.100, 0.900] | 0.100 [-0.400, 0.600] | n/a |") in card
    assert "| baseline: bicubic | 16.30 [15.80, 16.80] | n/a | | | 0.450 [-0.050, 0.950] | | | |" in card
    assert "| model | minus bicubic |\n|---|---|\n| full | 0.70 [0.20, 1.20]; n/a; above in 75% |" in card
    assert "no model that decodes through this VAE" not in card  # bicubic's mean is below the VAE ceiling
    assert "gives a masked PSNR of 23.00 [22.50, 23.50] dB on the same samples." in card
    inpainting = model_card("object_inpainting", {**ev, "models": {}})
    assert "f=4" in inpainting and "7 cross-attention layers" in inpainting and "residual" not in inpainting


def test_ci_reports_median_and_samples_exact_to_float_precision():
    c = _psnr_ci([10.0, 12.0, 14.0, 142.0])
    assert np.isclose(c["mean"], 44.5) and c["median"] == 13.0 and c["n_exact"] == 1 and c["n"] == 4
    # a percentile bootstrap of 4 values can only land between the smallest and the largest mean of 4 draws
    assert 10.0 <= c["ci_low"] < 44.5 < c["ci_high"] <= 142.0
    assert _psnr_ci([EXACT_DB, 20.0])["n_exact"] == 0  # strictly above the threshold


def test_inpainting_card_flags_an_oracle_whose_mean_no_model_can_reach():
    """An oracle exact on one sample of four (per-sample PSNR 12, 13, 14, 142 dB: mean 45.25, median
    13.5) against a VAE ceiling of 15.6 dB; the model's paired differences 1, 1, 1, -122 dB have mean
    -29.75, median 1 and are positive on 3 of 4 samples. CIs are hand-set so every cell is known."""
    oracle_psnr = {"mean": 45.25, "ci_low": 12.5, "ci_high": 110.0, "n": 4, "median": 13.5, "n_exact": 1}
    model_psnr = {"mean": 15.5, "ci_low": 13.75, "ci_high": 18.5, "n": 4, "median": 14.5, "n_exact": 0}
    minus_oracle = {"mean": -29.75, "ci_low": -122.0, "ci_high": 1.0, "n": 4, "median": 1.0, "share_positive": 0.75}
    model = {"masked_psnr": model_psnr, "masked_psnr_swapped": _c(10.0), "swap_gap_db": _c(2.0),
             "masked_ssim": _c(0.2), "masked_ssim_swapped": _c(0.1), "imacs_g": _c(0.1), "imacs_r": _c(0.2),
             "minus_baseline_db": {ORACLE_FILL: minus_oracle}}
    ev = {"n_samples": 4, "models": {"full": model}, "baselines": {ORACLE_FILL: {"masked_psnr": oracle_psnr,
                                                                              "masked_ssim": _c(0.3)}},
          "vae_reconstruction_masked_psnr": _c(15.6)}
    card = model_card("object_inpainting", ev)
    assert ("| full | 15.50 [13.75, 18.50] | 14.50 | 10.00 [9.50, 10.50] | 2.00 [1.50, 2.50] | "
            "0.200 [-0.300, 0.700] | 0.100 [-0.400, 0.600] | 0.100 [-0.400, 0.600] | 0.200 [-0.300, 0.700] |") in card
    assert (f"| baseline: {ORACLE_FILL} | 45.25 [12.50, 110.00] | 13.50 | | | 0.300 [-0.200, 0.800] | | | |"
            in card)
    assert (f"`{ORACLE_FILL}` is exact to float precision (above 100 dB) on 1 of 4 samples, which lifts its mean "
            "to 45.25 dB against a median of 13.50 dB.") in card
    assert (f"The mean of `{ORACLE_FILL}` is above the VAE's own reconstruction of the ground truth (15.60 dB): "
            "no model that decodes through this VAE can reach it on the mean") in card
    assert "| full | -29.75 [-122.00, 1.00]; 1.00; above in 75% |" in card
    assert "## Does the model use its reference? (4 held-out test samples)" in card


def test_inpainting_card_has_no_notes_for_a_baseline_below_the_ceiling_and_never_exact():
    plain = {"mean": 12.0, "ci_low": 11.0, "ci_high": 13.0, "n": 4, "median": 12.0, "n_exact": 0}
    ev = {"n_samples": 4, "models": {}, "baselines": {"context mean colour fill": {"masked_psnr": plain,
                                                                                "masked_ssim": _c(0.3)}},
          "vae_reconstruction_masked_psnr": _c(15.6)}
    card = model_card("object_inpainting", ev)
    assert "| baseline: context mean colour fill | 12.00 [11.00, 13.00] | 12.00 | | | 0.300 [-0.200, 0.800] | | | |" in card
    assert "exact to float precision" not in card and "VAE's own reconstruction" not in card


def test_paired_record_from_hand_computed_differences():
    """_paired([1, 1, 1, -122]) is what the card above renders: mean -29.75, median 1, 3 of 4 above."""
    p = _paired(np.array([1.0, 1.0, 1.0, -122.0]))
    assert p["mean"] == -29.75 and p["median"] == 1.0 and p["share_positive"] == 0.75 and p["n"] == 4
