import numpy as np
import torch

from benchmark.methods.head_selection import aggregate_heads, head_relevance, k_from


def _case(n_samples=4):
    """2 layers x 3 heads on an 8x8 grid; only head (1, 2) lights up the masked square."""
    torch.manual_seed(0)
    maps, masks = [], []
    for s in range(n_samples):
        mask = torch.zeros(8, 8)
        y, x = 1 + s % 3, 2 + s % 2
        mask[y : y + 4, x : x + 4] = 1
        lh = torch.rand(2, 3, 8, 8) * 0.2
        lh[1, 2] += mask * 2
        maps.append(lh)
        masks.append(mask)
    return maps, masks


def test_supervised_score_finds_the_relevant_head():
    maps, masks = _case()
    ranking = head_relevance(maps, masks, "supervised")
    assert tuple(ranking.top(1)[0]) == (1, 2)
    assert ranking.values[1, 2] == np.nanmax(ranking.values)


def test_label_free_score_ranks_consensus_head_first():
    maps, masks = _case()
    # make the relevant head also dominate the all-head mean, as a strong head does
    ranking = head_relevance(maps, None, "label_free")
    assert tuple(ranking.top(1)[0]) == (1, 2)


def test_top_k_equal_to_all_heads_is_all_head_map():
    maps, _ = _case(1)
    ranking = head_relevance(maps, None, "label_free")
    all_heads = aggregate_heads(maps[0], ranking.top(6))
    assert torch.allclose(all_heads, maps[0].mean((0, 1)), atol=1e-6)


def test_k_from_fraction_or_count():
    assert k_from(0.25, 28) == 7 and k_from(3, 28) == 3 and k_from(1.0, 28) == 28
