"""What an IMACS value means: its range and three landmark maps, for a given lambda.

IMACS = mean(M x) / mean(x) - lambda * mean(M (1 - x)) / mean(1 - x) for a
prepared map M in [0, 1] and a binary mask x (:mod:`benchmark.scoring.imacs`). Hence

* a perfect map (M = x: all attribution inside the region, at full strength) scores 1;
* a uniform map (M = 1 everywhere: no localisation at all) scores 1 - lambda;
* a map with all its attribution outside the region (M = 1 - x) scores -lambda;

and every map lies in [-lambda, 1].
"""

from __future__ import annotations

__all__ = ["imacs_landmarks", "render_imacs_landmarks"]


def imacs_landmarks(lam: float) -> dict[str, float]:
    """IMACS of the landmark maps at penalty ``lam`` (>= 0), in reading order.

    Returns:
        ``{"perfect map": 1, "uniform map": 1 - lam, "all attribution outside": -lam}``.
    """
    if not lam >= 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return {"perfect map": 1.0, "uniform map": 1.0 - float(lam), "all attribution outside": -float(lam)}


def render_imacs_landmarks(lam: float) -> list[str]:
    """One Markdown line stating the range of IMACS and its landmarks at ``lam``."""
    marks = imacs_landmarks(lam)
    return [
        f"IMACS (lambda = {lam:g}) ranges over [{-lam:g}, 1], higher is better: {marks['perfect map']:g} for a "
        f"perfect map (all attribution inside the region), {marks['uniform map']:g} for a uniform map "
        f"(attribution everywhere alike), {marks['all attribution outside']:g} for a map with all its "
        "attribution outside the region.",
        "",
    ]
