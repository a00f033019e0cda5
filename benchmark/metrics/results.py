"""Typed record of one computed (or uncomputable) metric value."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["higher", "lower"]

__all__ = ["Direction", "MetricValue", "package_version"]


def package_version(distribution: str) -> str:
    """``"<distribution> <version>"``, or ``"<distribution> (not installed)"``; used for ``implementation``."""
    try:
        return f"{distribution} {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


@dataclass(frozen=True)
class MetricValue:
    """One metric value together with everything needed to interpret it.

    Attributes:
        name: metric name, e.g. ``"fid"``, ``"kid"``, ``"lpips"``, ``"ssim"``.
        value: the value in the stated ``scale``; None when unavailable.
        unavailable: why the value could not be computed (None when it was).
        implementation: library and version, e.g. ``"clean-fid 0.1.35"``.
        mode: protocol name, e.g. ``"clean"`` for clean-fid's resizing protocol.
        resolution: (H, W) of the images the metric saw, or None if not applicable.
        n_samples: number of samples aggregated into ``value``.
        scale: factor the raw value was multiplied by (KID is often reported x1000).
        direction: ``"higher"`` or ``"lower"`` is better.
        extra: metric-specific details (e.g. KID subset size); JSON-friendly values.
    """

    name: str
    value: float | None
    unavailable: str | None = None
    implementation: str = ""
    mode: str | None = None
    resolution: tuple[int, int] | None = None
    n_samples: int = 0
    scale: float = 1.0
    direction: Direction = "lower"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.unavailable is None):
            raise ValueError(
                f"MetricValue {self.name!r}: exactly one of value and unavailable must be set "
                f"(got value={self.value!r}, unavailable={self.unavailable!r})"
            )
        if self.direction not in ("higher", "lower"):
            raise ValueError(
                f"MetricValue {self.name!r}: direction must be 'higher' or 'lower', got {self.direction!r}"
            )
        if self.value is not None:
            object.__setattr__(self, "value", float(self.value))

    @property
    def available(self) -> bool:
        return self.value is not None

    @property
    def raw_value(self) -> float | None:
        """``value`` divided by ``scale`` (the library's native units)."""
        return None if self.value is None else self.value / self.scale

    @classmethod
    def missing(cls, name: str, reason: str, **kwargs: Any) -> MetricValue:
        """A value that could not be computed; ``reason`` should name what is missing and where it was looked for."""
        return cls(name=name, value=None, unavailable=reason, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Flat dict for one row of a tidy frame; ``extra`` keys are prefixed with ``extra_``."""
        row: dict[str, Any] = {
            "metric": self.name,
            "value": math.nan if self.value is None else self.value,
            "unavailable": self.unavailable,
            "implementation": self.implementation,
            "mode": self.mode,
            "resolution_h": None if self.resolution is None else self.resolution[0],
            "resolution_w": None if self.resolution is None else self.resolution[1],
            "n_samples": self.n_samples,
            "scale": self.scale,
            "direction": self.direction,
        }
        for key, val in self.extra.items():
            row[f"extra_{key}"] = val
        return row
