"""The names of the maps and scores, and the capture and scoring defaults, stated once (the paper's values;
``docs/maps.md``). Nothing here imports anything: every layer, the config included, reads them from here.

``THRESHOLD_GRID``: the thresholds at which every job stores the two IMACS terms of each sample, so that
IMACS at any lambda and at any of these thresholds (the default, the sweep) is recomputed by ``report``
from the job record alone; other thresholds are recomputed from the stored maps.
"""

# --- maps ----------------------------------------------------------------------------------------------------------
MAP_LEVELS = ("ulam", "tlam", "hlam", "llam", "sram")  # every level a capture can accumulate
MAP_LEVEL_LABELS = {"ulam": "ULAM", "tlam": "TLAM", "hlam": "HLAM", "llam": "LLAM", "sram": "SRAM"}
# What the maps of a stacked level are one per (singular, plural), for figure titles.
MAP_LEVEL_UNITS = {"tlam": ("time group", "time groups"), "hlam": ("head", "heads"), "llam": ("layer", "layers")}
TIME_GROUPS = 5  # TLAM: the sampling steps are split into this many consecutive groups

# --- scores --------------------------------------------------------------------------------------------------------
IMACS_SCORES = ("imacs_g", "imacs_r")  # generated side, reference side: every job records both
DEFAULT_THRESHOLD = 0.4
DEFAULT_LAMBDA = 3.0
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00, 0.05, ..., 0.95

# --- one-pass attribution (docs/one_pass.md) -----------------------------------------------------------------------
ONE_PASS_TIMESTEPS = (250, 500, 750)  # of the scheduler's training steps
TRAINING_TIMESTEPS = 1000  # the training steps of every scheduler the shipped adapters use


def one_pass_timesteps(timesteps, upper: int | None = None) -> tuple[int, ...]:
    """``timesteps`` as a tuple, checked: at least one, integers, distinct, ``>= 0`` (and ``< upper`` when given;
    otherwise the model's scheduler checks the range when it is called). ``ValueError`` naming the problem."""
    ts = tuple(timesteps)
    if not ts:
        raise ValueError("one-pass timesteps: give at least one")
    if any(isinstance(t, bool) or not isinstance(t, int) for t in ts):
        raise ValueError(f"one-pass timesteps must be integers (of the {TRAINING_TIMESTEPS} training steps), "
                         f"got {list(ts)}")
    if min(ts) < 0:
        raise ValueError(f"one-pass timesteps must be >= 0, got {list(ts)}")
    if upper is not None and max(ts) >= upper:
        raise ValueError(f"one-pass timesteps must be below {upper}, got {list(ts)}")
    if len(set(ts)) != len(ts):
        raise ValueError(f"one-pass timesteps must be distinct, got {list(ts)}")
    return ts
