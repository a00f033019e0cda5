"""How an adapter's reference tokens map onto a (h_I, w_I) grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLayout:
    """Reference-token layout declared by a model adapter.

    ``grid`` is (h_I, w_I), the grid of the kept tokens in row-major order.
    ``drop`` lists token indices (CLS, registers) removed AFTER the softmax, so
    they still take their share of attention but never appear in a map.
    A layout with a single kept token (a pooled CLS embedding, as
    Paint-by-Example uses) has a generated-side map but no reference-side map.
    """

    grid: tuple[int, int]
    drop: tuple[int, ...] = ()

    @property
    def n_kept(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def reference_side(self) -> bool:
        """Whether reference-side maps (M_r, SRAM) are meaningful for this layout."""
        return self.n_kept > 1

    def kept_index(self, n_tokens: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Indices of the kept tokens among ``n_tokens``; errors if the count does not match the grid."""
        drop = {d % n_tokens for d in self.drop}
        kept = [i for i in range(n_tokens) if i not in drop]
        if len(kept) != self.n_kept:
            raise ValueError(
                f"reference context has {n_tokens} tokens; dropping {sorted(drop)} leaves {len(kept)}, "
                f"but the declared grid {self.grid} needs {self.n_kept}")
        return torch.tensor(kept, device=device, dtype=torch.long)
