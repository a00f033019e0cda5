"""The resampling settings shared by every test and interval of :mod:`benchmark.analysis`.

One :class:`Resampling` travels from the report (built once from the run's config:
:func:`benchmark.report.build.resampling`) to every function that draws bootstrap resamples or permutations, so
a setting has one default and one meaning everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Resampling"]


@dataclass(frozen=True)
class Resampling:
    """How p-values and confidence intervals are resampled.

    Attributes:
        n_boot: bootstrap resamples of an interval (the config's ``scoring.n_boot``).
        n_permutations: Monte-Carlo permutations (pairings, sign patterns, swaps) of a p-value where the exact
            enumeration is larger.
        confidence: interval coverage in (0, 1).
        seed: seed of every draw (same settings, same numbers).
    """

    n_boot: int = 1000
    n_permutations: int = 9999
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 1 or self.n_permutations < 1:
            raise ValueError(f"need n_boot >= 1 and n_permutations >= 1, got {self.n_boot} and {self.n_permutations}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
