"""Downstream image metrics: FID/KID (clean-fid), LPIPS, SSIM/PSNR and their masked variants.

Weights are never downloaded: see :mod:`benchmark.metrics.weights` for where
they are looked for. Value ranges differ per metric and are part of each
function's contract: FID/KID extractors take [0, 255], LPIPS takes [-1, 1],
SSIM/PSNR take [0, 1].
"""

from benchmark.metrics.fid import (
    CLEAN_MODE,
    INCEPTION_NAME,
    CleanFIDExtractor,
    FeatureAccumulator,
    FeatureExtractor,
    KIDEstimate,
    build_clean_extractor,
    compute_fid_kid,
    extract_features,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    kid_from_features,
    load_clean_inception,
)
from benchmark.metrics.lpips_metric import (
    LPIPS_MIN_SIZE,
    LPIPS_MODE,
    LPIPSMetric,
    compute_lpips,
    load_lpips_alex,
    lpips_distance,
)
from benchmark.metrics.reference_stats import (
    CACHE_DIR_ENV,
    ReferenceStats,
    ReferenceStatsCache,
    default_cache_dir,
    reference_stats_key,
)
from benchmark.metrics.results import MetricValue, package_version
from benchmark.metrics.ssim_psnr import SSIM_BORDER, MaskedScores, masked_psnr, masked_ssim, psnr, ssim, ssim_map
from benchmark.metrics.weights import (
    METRIC_WEIGHTS,
    WEIGHT_FILES,
    WEIGHTS_DIR_ENV,
    Unavailable,
    WeightFile,
    WeightsUnavailableError,
    candidate_paths,
    require_metric_weights,
    resolve_metric_weights,
    resolve_weight_file,
    weights_dir_from_env,
)

__all__ = [
    "CACHE_DIR_ENV",
    "CLEAN_MODE",
    "INCEPTION_NAME",
    "LPIPS_MIN_SIZE",
    "LPIPS_MODE",
    "METRIC_WEIGHTS",
    "SSIM_BORDER",
    "WEIGHTS_DIR_ENV",
    "WEIGHT_FILES",
    "CleanFIDExtractor",
    "FeatureAccumulator",
    "FeatureExtractor",
    "KIDEstimate",
    "LPIPSMetric",
    "MaskedScores",
    "MetricValue",
    "ReferenceStats",
    "ReferenceStatsCache",
    "Unavailable",
    "WeightFile",
    "WeightsUnavailableError",
    "build_clean_extractor",
    "candidate_paths",
    "compute_fid_kid",
    "compute_lpips",
    "default_cache_dir",
    "extract_features",
    "fid_from_features",
    "frechet_distance",
    "kernel_inception_distance",
    "kid_from_features",
    "load_clean_inception",
    "load_lpips_alex",
    "lpips_distance",
    "masked_psnr",
    "masked_ssim",
    "package_version",
    "psnr",
    "reference_stats_key",
    "require_metric_weights",
    "resolve_metric_weights",
    "resolve_weight_file",
    "ssim",
    "ssim_map",
    "weights_dir_from_env",
]
