"""Alignment losses between a model's token attributions and a prior (docs/cap.md §2).

All losses take ``(B, T)`` attributions ``a``, ``(B, T)`` priors ``p`` in [0, 1] and a ``(B, T)`` bool ``mask`` of
the tokens that count (content tokens that carry a prior). Rows with no such token are left out of the batch mean;
a batch with none gives a zero that is still connected to the graph. Rows whose prior is zero on every such token
(relu of a non-positive surrogate) say nothing about where the attribution should go: they are left out as well
(:func:`informative_rows`), so they get no alignment gradient (ε-smoothing would have made their ``kl`` target
uniform, and ``mse`` would have pulled their attributions to 0; docs/cap.md §2).

- ``kl``: KL(p̂ ‖ softmax(a / std(a))) with p̂ = ε-smoothed prior as a distribution (canonical; scale-free).
- ``mse``: mean (a / max|a| − p)² (Liu & Avci 2019 style L2; the max is detached).
- Scales (std, max) are detached and floored relative to the row's largest |a|, so near-tied or all-zero
  attributions cannot produce 1/ε gradients.
- ``cosine``: 1 − cos(a, p).
- ``rank``: hinge on pairs (i, j) with p_i > p_j: mean max(0, δ − (z_i − z_j)), z = a / std(a), δ = ``margin``.
  (docs/cap.md writes the hinge on softmax probabilities; standardised scores keep δ meaningful at any length.)
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from lmcore.choices import check_choice

AlignmentLoss = Literal["kl", "mse", "cosine", "rank"]
ALIGNMENT_LOSSES: tuple[str, ...] = get_args(AlignmentLoss)
_EPS = 1e-6
_REL_FLOOR = 1e-2  # scales are floored at 1% of the row's largest |a|: near-ties must not give 1/ε gradients
_ABS_FLOOR = 1e-4  # and at this absolute value for all-zero rows


def _row_scale(a: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Detached per-row scale (B, 1): the std or the max of |a| over valid tokens, floored (see above)."""
    a = a.detach()
    peak = (a.abs() * mask).amax(-1, keepdim=True)
    if kind == "max":
        scale = peak
    else:
        n = mask.sum(-1, keepdim=True).clamp_min(1)
        mean = (a * mask).sum(-1, keepdim=True) / n
        scale = ((((a - mean) * mask) ** 2).sum(-1, keepdim=True) / n).sqrt()
    return torch.maximum(scale, _REL_FLOOR * peak).clamp_min(_ABS_FLOOR)


def _row_mean(per_row: Tensor, mask: Tensor) -> Tensor:
    rows = mask.any(-1)
    if not rows.any():
        return per_row.sum() * 0.0
    return per_row[rows].mean()


def kl_alignment(a: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    z = a / _row_scale(a, mask, "std")
    log_q = torch.log_softmax(z.masked_fill(~mask, float("-inf")), dim=-1)
    p_hat = (p + _EPS) * mask
    p_hat = p_hat / p_hat.sum(-1, keepdim=True).clamp_min(_EPS)
    terms = torch.where(mask, p_hat * (torch.log(p_hat.clamp_min(_EPS)) - log_q), torch.zeros_like(a))
    return _row_mean(terms.sum(-1), mask)


def mse_alignment(a: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    sq = ((a / _row_scale(a, mask, "max") - p) ** 2) * mask
    return _row_mean(sq.sum(-1) / mask.sum(-1).clamp_min(1), mask)


def cosine_alignment(a: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    cos = torch.nn.functional.cosine_similarity(a * mask, p * mask, dim=-1, eps=_EPS)
    return _row_mean(1.0 - cos, mask)


def rank_alignment(a: Tensor, p: Tensor, mask: Tensor, margin: float = 1.0) -> Tensor:
    z = a / _row_scale(a, mask, "std")  # (B, T)
    pairs = (p.unsqueeze(-1) > p.unsqueeze(-2)) & mask.unsqueeze(-1) & mask.unsqueeze(-2)  # (B, T, T): i above j
    hinge = torch.relu(margin - (z.unsqueeze(-1) - z.unsqueeze(-2))) * pairs
    per_row = hinge.sum((-1, -2)) / pairs.sum((-1, -2)).clamp_min(1)
    return _row_mean(per_row, pairs.flatten(1))


def informative_rows(p: Tensor, mask: Tensor) -> Tensor:
    """(B,) bool: rows with a positive prior on at least one masked token (the rows the alignment loss uses)."""
    return ((p > 0) & mask.bool()).any(-1)


def alignment_loss(kind: AlignmentLoss, a: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    """Dispatch to the named alignment loss; see the module docstring for the definitions. Rows whose prior is zero
    on every masked token are left out (:func:`informative_rows`)."""
    losses = {"kl": kl_alignment, "mse": mse_alignment, "cosine": cosine_alignment, "rank": rank_alignment}
    check_choice("alignment loss", kind, AlignmentLoss)
    p, mask = p.float().to(a.device), mask.to(a.device).bool()
    mask = mask & informative_rows(p, mask)[:, None]
    return losses[kind](a.float(), p, mask)
