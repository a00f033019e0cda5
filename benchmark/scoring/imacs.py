"""IMACS (eq. 17-18): how well a thresholded attribution map agrees with a mask.

    IMACS = mean(M_hat * x) / mean(x) - lambda * mean(M_hat * (1 - x)) / mean(1 - x)

with x the inpainting mask (IMACS_g) or the reference mask (IMACS_r), M_hat
the normalised, resized, thresholded map (eq. 9); range [-lambda, 1], higher
is better. An empty or full mask, or a constant map, has no defined score:
the result says why instead of dividing by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD
from benchmark.scoring.maps import prepare_map


@dataclass(frozen=True)
class IMACSResult:
    value: float | None
    undefined: str | None = None  # reason, when value is None

    @property
    def defined(self) -> bool:
        return self.value is not None

    def as_float(self) -> float:
        return float("nan") if self.value is None else self.value


def imacs_from_prepared(m_hat: torch.Tensor, mask: torch.Tensor, lam: float = DEFAULT_LAMBDA) -> IMACSResult:
    """IMACS of one prepared map ``m_hat`` (H, W) in [0, 1] against a binary ``mask`` (H, W)."""
    if m_hat.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"map {tuple(m_hat.shape)} and mask {tuple(mask.shape)} differ in size")
    x = (mask.reshape(m_hat.shape[-2:]) > 0.5).double()
    inside = x.mean().item()
    if inside == 0.0:
        return IMACSResult(None, "empty mask")
    if inside == 1.0:
        return IMACSResult(None, "full mask (no outside region)")
    if torch.isnan(m_hat).any():
        return IMACSResult(None, "constant attribution map")
    inside_term, outside_term = imacs_terms(m_hat, x)
    return IMACSResult(inside_term - lam * outside_term)


def imacs_terms(m_hat: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(mean(M_hat * x) / mean(x), mean(M_hat * (1 - x)) / mean(1 - x)): IMACS = a - lambda * b, so a
    sweep over lambda needs these two numbers only. The mask must be neither empty nor full."""
    m, x = m_hat.double(), (mask.reshape(m_hat.shape[-2:]) > 0.5).double()
    return float((m * x).mean() / x.mean()), float((m * (1 - x)).mean() / (1 - x).mean())


def imacs_term_grid(raw_map: torch.Tensor, mask: torch.Tensor, thresholds) -> tuple[list[list[float]] | None, str | None]:
    """The two IMACS terms of a raw map (h, w) against a mask (H, W) at every threshold of ``thresholds``:
    ``([a_0..a_T], [b_0..b_T])`` with IMACS(lambda, t) = a_t - lambda * b_t, or ``(None, reason)`` when the
    score is undefined (empty or full mask, constant map). The map is normalised and resized once."""
    size = tuple(mask.shape[-2:])
    base = prepare_map(raw_map, size, threshold=-1.0)
    x = mask.reshape(size)
    undefined = imacs_from_prepared(base, x, 0.0).undefined
    if undefined:
        return None, undefined
    terms = [imacs_terms(torch.where(base > t, base, torch.zeros_like(base)), x) for t in thresholds]
    return [[a for a, _ in terms], [b for _, b in terms]], None


def imacs(raw_map: torch.Tensor, mask: torch.Tensor, lam: float = DEFAULT_LAMBDA,
          threshold: float = DEFAULT_THRESHOLD) -> IMACSResult:
    """IMACS of a raw map (h, w) against a mask (H, W) or (1, H, W): eq. (8), (9), then (18)."""
    size = tuple(mask.shape[-2:])
    return imacs_from_prepared(prepare_map(raw_map, size, threshold), mask.reshape(size), lam)
