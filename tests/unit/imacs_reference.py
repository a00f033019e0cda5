"""An independent numpy IMACS (eq. 8, 9, 18) for checking ``benchmark.scoring.imacs`` and what builds on it.

Written from the formula, not from the package: min-max normalise the raw map, resize it to the mask
with a brute-force bicubic (Keys' cubic convolution, a = -0.75, pixel centres at i + 0.5, edge pixels
repeated: the convention of ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``),
clip to [0, 1], zero values at or below the threshold, then

    IMACS = mean(M_hat * x) / mean(x) - lambda * mean(M_hat * (1 - x)) / mean(1 - x).
"""

from __future__ import annotations

import math

import numpy as np

A = -0.75  # Keys' parameter, as PyTorch's and OpenCV's bicubic use


def keys_kernel(s: float) -> float:
    """Keys' cubic convolution kernel W(s): 1 at 0, 0 at the other integers, support (-2, 2)."""
    s = abs(s)
    if s <= 1:
        return (A + 2) * s**3 - (A + 3) * s**2 + 1
    if s < 2:
        return A * s**3 - 5 * A * s**2 + 8 * A * s - 4 * A
    return 0.0


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D bicubic resize: output pixel o samples the input at
    (o + 0.5) * n_in / n_out - 0.5; taps outside the input read the nearest edge pixel."""
    r = np.zeros((n_out, n_in))
    for o in range(n_out):
        src = (o + 0.5) * n_in / n_out - 0.5
        base = math.floor(src)
        for j in range(base - 1, base + 3):
            r[o, min(max(j, 0), n_in - 1)] += keys_kernel(src - j)
    return r


def prepare(raw: np.ndarray, size: tuple[int, int], threshold: float) -> np.ndarray | None:
    """M_hat (H, W) in [0, 1] of a raw (h, w) map; None for a constant map (no attribution)."""
    m = np.asarray(raw, dtype=np.float64)
    lo, hi = m.min(), m.max()
    if hi == lo:
        return None
    norm = (m - lo) / (hi - lo)
    if norm.shape != tuple(size):
        norm = bicubic_matrix(norm.shape[0], size[0]) @ norm @ bicubic_matrix(norm.shape[1], size[1]).T
    up = np.clip(norm, 0.0, 1.0)
    return np.where(up > threshold, up, 0.0)


def reference_imacs(raw, mask, lam: float = 3.0, threshold: float = 0.4) -> float:
    """IMACS of a raw (h, w) map against a binary (H, W) mask; NaN where it is undefined
    (empty or full mask, constant map)."""
    x = (np.asarray(mask, dtype=np.float64) > 0.5).astype(np.float64)
    m_hat = prepare(raw, x.shape, threshold)
    if m_hat is None or x.mean() in (0.0, 1.0):
        return float("nan")
    return float((m_hat * x).mean() / x.mean() - lam * (m_hat * (1 - x)).mean() / (1 - x).mean())
