"""Statistics over stored results: correlations with permutation p-values and BCa CIs,
within- vs between-model correlations, area confounds, held-out sweeps, segmentation scores. Every resampled
p-value and interval takes its settings from one :class:`Resampling`."""

from benchmark.analysis.bootstrap import Interval, MeanCI, bootstrap_ci, bootstrap_mean
from benchmark.analysis.confounds import AREAS, confounds, partial_correlation, render_confounds
from benchmark.analysis.correlation import (
    EXACT_MAX_N,
    METHODS,
    MIN_MODELS_FOR_CI,
    MIN_PAIRS,
    TOO_FEW_MODELS,
    CorrelationResult,
    correlation,
)
from benchmark.analysis.landmarks import imacs_landmarks, render_imacs_landmarks
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.segmentation import SegmentationScores, average_precision, segmentation_scores
from benchmark.analysis.sweep import (
    DEFAULT_CELL,
    SweepData,
    SweepGrid,
    correlation_sweep,
    plot_sweep_heatmap,
    render_sweep,
    split_halves,
)
from benchmark.analysis.validity import WITHIN_BETWEEN_NOTE, render_within_between, within_between, within_combined

__all__ = [
    "AREAS",
    "DEFAULT_CELL",
    "EXACT_MAX_N",
    "METHODS",
    "MIN_MODELS_FOR_CI",
    "MIN_PAIRS",
    "TOO_FEW_MODELS",
    "WITHIN_BETWEEN_NOTE",
    "CorrelationResult",
    "Interval",
    "MeanCI",
    "Resampling",
    "SegmentationScores",
    "SweepData",
    "SweepGrid",
    "average_precision",
    "bootstrap_ci",
    "bootstrap_mean",
    "confounds",
    "correlation",
    "correlation_sweep",
    "imacs_landmarks",
    "partial_correlation",
    "plot_sweep_heatmap",
    "render_confounds",
    "render_imacs_landmarks",
    "render_sweep",
    "render_within_between",
    "segmentation_scores",
    "split_halves",
    "within_between",
    "within_combined",
]
