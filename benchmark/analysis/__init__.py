"""Statistics over stored results: correlations, bootstrap CIs, segmentation scores, sweeps."""

from benchmark.analysis.bootstrap import MeanCI, bootstrap_indices, bootstrap_mean, drop_nan, percentile_interval
from benchmark.analysis.correlation import (
    METHODS,
    MIN_PAIRS,
    CorrelationResult,
    correlation,
    model_level_correlation,
    pearson,
    sample_level_correlations,
    spearman,
)
from benchmark.analysis.segmentation import (
    MeanAP,
    SegmentationScores,
    average_precision,
    binarize,
    mean_average_precision,
    score_samples,
    segmentation_scores,
)
from benchmark.analysis.sweep import DEFAULT_CELL, best_cell, correlation_sweep, plot_sweep_heatmap

__all__ = [
    "DEFAULT_CELL",
    "METHODS",
    "MIN_PAIRS",
    "CorrelationResult",
    "MeanAP",
    "MeanCI",
    "SegmentationScores",
    "average_precision",
    "best_cell",
    "binarize",
    "bootstrap_indices",
    "bootstrap_mean",
    "correlation",
    "correlation_sweep",
    "drop_nan",
    "mean_average_precision",
    "model_level_correlation",
    "pearson",
    "percentile_interval",
    "plot_sweep_heatmap",
    "sample_level_correlations",
    "score_samples",
    "segmentation_scores",
    "spearman",
]
