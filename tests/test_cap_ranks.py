import pytest
import torch
from scipy.stats import rankdata

from cap_lightning.priors.hybrid import fuse_padded
from lmcore.ranks import average_ranks, scaled_ranks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_average_ranks_match_scipy_over_the_mask(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (6, 9), generator=g).to(dtype)  # many ties
    mask = torch.rand(6, 9, generator=g) > 0.3
    mask[0] = False
    mask[1] = False
    mask[1, 4] = True  # one entry
    ranks = average_ranks(x, mask)
    assert ranks.dtype == dtype and torch.isfinite(ranks).all()
    for row, m, r in zip(x, mask, ranks):
        if m.any():
            expected = torch.tensor(rankdata(row[m].numpy(), method="average"), dtype=dtype)
            torch.testing.assert_close(r[m], expected)


def test_scaled_ranks_span_zero_to_one_and_ignore_padding():
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 99.0], [5.0, -7.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False], [True, False, False, False, False]])
    out = scaled_ranks(x, mask)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.0, 0.5, 0.5, 0.0]))
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))  # a single word gets 1
    padded = x.clone()
    padded[~mask] = -1e9
    torch.testing.assert_close(scaled_ranks(padded, mask), out)


def test_rank_mean_fusion_is_the_mean_of_scaled_ranks():
    scores = torch.tensor([[[0.1, 0.9, 0.5]], [[0.3, 0.2, 0.8]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    mean = (scaled_ranks(scores[0], mask) + scaled_ranks(scores[1], mask)) / 2
    torch.testing.assert_close(fuse_padded(scores, mask, "rank_mean"), mean / mean.max())
