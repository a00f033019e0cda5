"""Downstream image metrics: FID/KID (clean-fid), LPIPS (lpips), SSIM/PSNR and their masked variants.

Weights are never downloaded: see :mod:`benchmark.metrics.weights` for where
they are looked for. Value ranges are part of each function's contract:
the set-metric inputs and SSIM/PSNR take images in [0, 1].
"""

# Imported on first use: the report reads stored features without importing torchmetrics.
_WHERE = {
    "ReferenceSetKey": "benchmark.metrics.reference_stats",
    "ReferenceStatsCache": "benchmark.metrics.reference_stats",
    "SMALL_N_NOTE": "benchmark.metrics.set_metrics",
    "SetInputs": "benchmark.metrics.set_metrics",
    "extract_set_inputs": "benchmark.metrics.set_metrics",
    "set_metric_values": "benchmark.metrics.set_metrics",
    "Unavailable": "benchmark.metrics.weights",
    "resolve_metric_weights": "benchmark.metrics.weights",
    "masked_psnr": "benchmark.metrics.ssim_psnr",
    "masked_ssim": "benchmark.metrics.ssim_psnr",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'benchmark.metrics' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
