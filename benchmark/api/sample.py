"""The sample contract: what a task hands to a model adapter and to the scorers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the errors below are raised where no tensor is made (validate)
    import torch


class SampleError(ValueError):
    """A sample that cannot be used; the message names the sample and the file."""

    def __init__(self, sample_id: str, path: str, reason: str):
        super().__init__(f"sample {sample_id!r}: {reason} ({path})")
        self.sample_id, self.path, self.reason = sample_id, path, reason


class DatasetError(FileNotFoundError):
    """A dataset that yields no samples at all: its root or a folder of its layout is missing, or it is empty.

    The message names the format, the root, why, and what was looked for (e.g.
    ``<root>/test_bench/GT_3500/*_GT.png``), so a run can report the task
    instead of planning zero jobs. A FileNotFoundError, as most causes are
    missing files.
    """

    def __init__(self, format: str, root: str, reason: str, looked_for: str):
        super().__init__(f"{format} dataset at {root}: {reason}; looked for {looked_for}")
        self.format, self.root, self.reason, self.looked_for = format, root, reason, looked_for


@dataclass
class I2ISample:
    """One image-to-image sample.

    Tensors are float32 in [0, 1]. ``reference`` is (3, Hr, Wr); every entry of
    ``conditions`` is (3, H, W) for an image or (1, H, W) for a mask, at the
    generated size. ``target`` (3, H, W) is the ground truth when the protocol
    has one (paired). ``region_mask`` (1, H, W) is x_g, the region the model
    fills or the reference covers; ``reference_mask`` (1, Hr, Wr) is x_r.
    Masks are binary {0, 1}; None means the dataset provides none.
    """

    sample_id: str
    reference: torch.Tensor
    conditions: dict[str, torch.Tensor]
    target: torch.Tensor | None = None
    region_mask: torch.Tensor | None = None
    reference_mask: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        first = next(iter(self.conditions.values()), self.target)
        return tuple(first.shape[-2:])  # type: ignore[return-value]


def condition_size(conditions: dict) -> tuple[int, int]:
    """(H, W) of a collated batch's conditions: the size the model generates."""
    return tuple(next(iter(conditions.values())).shape[-2:])  # type: ignore[return-value]


def collate(samples: list[I2ISample]) -> dict:
    """Stack a list of samples into batch tensors; optional fields stay None if any sample lacks them."""

    import torch

    def stack(values):
        return None if any(v is None for v in values) else torch.stack(values)

    return {
        "sample_id": [s.sample_id for s in samples],
        "reference": torch.stack([s.reference for s in samples]),
        "conditions": {k: torch.stack([s.conditions[k] for s in samples]) for k in samples[0].conditions},
        "target": stack([s.target for s in samples]),
        "region_mask": stack([s.region_mask for s in samples]),
        "reference_mask": stack([s.reference_mask for s in samples]),
    }
