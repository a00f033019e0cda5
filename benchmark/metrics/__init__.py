"""Downstream image metrics: FID/KID (clean-fid), LPIPS (lpips), SSIM/PSNR and their masked variants.

Weights are never downloaded: see :mod:`benchmark.metrics.weights` for where
they are looked for. Value ranges are part of each function's contract:
the set-metric inputs and SSIM/PSNR take images in [0, 1].
"""

# Imported on first use: the report reads stored features without importing torchmetrics.
_WHERE = {
    "CACHE_DIR_ENV": "benchmark.metrics.reference_stats",
    "FID_FULL_N": "benchmark.metrics.set_metrics",
    "LPIPS_MIN_SIZE": "benchmark.metrics.set_metrics",
    "METRIC_WEIGHTS": "benchmark.metrics.weights",
    "MODE": "benchmark.metrics.set_metrics",
    "MaskedScores": "benchmark.metrics.ssim_psnr",
    "ReferenceSetKey": "benchmark.metrics.reference_stats",
    "ReferenceStats": "benchmark.metrics.reference_stats",
    "ReferenceStatsCache": "benchmark.metrics.reference_stats",
    "SMALL_N_NOTE": "benchmark.metrics.set_metrics",
    "SSIM_BORDER": "benchmark.metrics.ssim_psnr",
    "SetInputs": "benchmark.metrics.set_metrics",
    "Unavailable": "benchmark.metrics.weights",
    "WEIGHTS_DIR_ENV": "benchmark.metrics.weights",
    "WEIGHT_FILES": "benchmark.metrics.weights",
    "candidate_paths": "benchmark.metrics.weights",
    "default_cache_dir": "benchmark.metrics.reference_stats",
    "extract_set_inputs": "benchmark.metrics.set_metrics",
    "fid_kid_label": "benchmark.metrics.set_metrics",
    "lpips_label": "benchmark.metrics.set_metrics",
    "masked_psnr": "benchmark.metrics.ssim_psnr",
    "masked_ssim": "benchmark.metrics.ssim_psnr",
    "psnr": "benchmark.metrics.ssim_psnr",
    "resolve_metric_weights": "benchmark.metrics.weights",
    "set_metric_values": "benchmark.metrics.set_metrics",
    "ssim": "benchmark.metrics.ssim_psnr",
    "ssim_map": "benchmark.metrics.ssim_psnr",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'benchmark.metrics' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CACHE_DIR_ENV",
    "FID_FULL_N",
    "LPIPS_MIN_SIZE",
    "METRIC_WEIGHTS",
    "MODE",
    "SMALL_N_NOTE",
    "SSIM_BORDER",
    "WEIGHTS_DIR_ENV",
    "WEIGHT_FILES",
    "MaskedScores",
    "ReferenceSetKey",
    "ReferenceStats",
    "ReferenceStatsCache",
    "SetInputs",
    "Unavailable",
    "candidate_paths",
    "default_cache_dir",
    "extract_set_inputs",
    "fid_kid_label",
    "lpips_label",
    "masked_psnr",
    "masked_ssim",
    "psnr",
    "resolve_metric_weights",
    "set_metric_values",
    "ssim",
    "ssim_map",
]
