"""Scoring defaults, stated once (the paper's values; ``docs/maps.md``).

``THRESHOLD_GRID``: the thresholds at which every job stores the two IMACS terms of each sample, so that
IMACS at any lambda and at any of these thresholds (the default, the sweep) is recomputed by ``report``
from the job record alone; other thresholds are recomputed from the stored maps.
"""

DEFAULT_THRESHOLD = 0.4
DEFAULT_LAMBDA = 3.0
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00, 0.05, ..., 0.95
