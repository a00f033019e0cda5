from __future__ import annotations

import pytest
import torch

from benchmark.analysis.landmarks import imacs_landmarks, render_imacs_landmarks
from benchmark.scoring.imacs import imacs_from_prepared


@pytest.mark.parametrize("lam", [0.0, 1.0, 3.0])
def test_landmarks_are_the_imacs_of_the_landmark_maps(lam: float) -> None:
    mask = torch.zeros(6, 8)
    mask[1:4, 2:7] = 1.0
    marks = imacs_landmarks(lam)
    maps = {"perfect map": mask, "uniform map": torch.ones_like(mask), "all attribution outside": 1.0 - mask}
    assert list(marks) == list(maps)
    for name, m_hat in maps.items():
        assert marks[name] == pytest.approx(imacs_from_prepared(m_hat, mask, lam).value)


def test_render_states_range_and_landmarks() -> None:
    line = render_imacs_landmarks(3.0)[0]
    assert "[-3, 1]" in line and "-2 for a uniform map" in line and "-3 for a map with all" in line
    with pytest.raises(ValueError, match="lambda"):
        imacs_landmarks(-1.0)
