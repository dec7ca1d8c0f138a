"""Average ranks within each row over a mask: the one rank transform of the rank-mean hybrid prior and of the
Spearman agreement metrics of both packages (docs/cap.md §3.4, §7; steering.attribution_agreement).

Design decisions:
- Ties get the mean of the ranks they span; only masked entries are ranked and counted (padding never shifts a
  rank). Off the mask the result is a finite count with no meaning: callers multiply by the mask or ignore it.
- Pairwise comparisons, ``(…, T, T)``: exact and batched; rows are word or token counts, so T² stays small.
"""

from __future__ import annotations

import torch
from torch import Tensor


def average_ranks(x: Tensor, mask: Tensor) -> Tensor:
    """1-based ranks among the masked entries of each row of ``x`` (``(…, T)``), ties averaged; in ``x.dtype``."""
    other = mask.unsqueeze(-2)  # (…, 1, T): j ranges over masked entries
    less = ((x.unsqueeze(-2) < x.unsqueeze(-1)) & other).sum(-1)  # (…, T): #{j: x_j < x_i}
    equal = ((x.unsqueeze(-2) == x.unsqueeze(-1)) & other).sum(-1)  # includes i itself when i is masked
    return less.to(x.dtype) + (equal.to(x.dtype) + 1.0) / 2.0


def scaled_ranks(x: Tensor, mask: Tensor) -> Tensor:
    """Average ranks over the masked entries of each row scaled to [0, 1] (lowest 0, highest 1; a single entry
    gets 1); zero off the mask."""
    rank = average_ranks(x, mask) - 1.0  # 0-based
    n = mask.sum(-1, keepdim=True)
    scaled = torch.where(n > 1, rank / (n - 1).clamp_min(1), torch.ones_like(rank))
    return scaled * mask
