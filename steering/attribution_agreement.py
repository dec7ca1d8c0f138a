"""How far two token attributions agree: Jaccard of their top-k sets, Spearman ρ of their scores, and summaries.

The pure half of ``python -m steering.attribution_check`` (docs/grains.md §6.9): whether the P / Q sets GrAInS masks
survive a change of IG step count, and whether IG and occlusion rank the candidate tokens alike.

Design decisions:
- Jaccard of two empty sets is 1 (two selections that agree there is nothing to mask agree); of a set with itself 1.
- Spearman ρ is Pearson's r of average ranks (ties share their mean rank); NaN where it is undefined (fewer than 2
  scores, or one side constant), and summaries skip NaN and count what they averaged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

import torch

from lmcore.ranks import average_ranks as lmcore_ranks


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    """|A ∩ B| / |A ∪ B| of two index sets; 1.0 when both are empty."""
    sa, sb = {int(i) for i in a}, {int(i) for i in b}
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def pairwise_jaccard(sets: Mapping[int, Iterable[int]]) -> dict[str, float]:
    """Jaccard of every pair of the sets keyed by step count: ``{"10-20": j, …}`` (smaller key first)."""
    keys = sorted(sets)
    return {f"{a}-{b}": jaccard(sets[a], sets[b]) for i, a in enumerate(keys) for b in keys[i + 1 :]}


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1 … n of ``x`` (n,), ties sharing their mean rank (float64): ``lmcore.ranks`` over every entry."""
    x = x.double().reshape(-1)
    return lmcore_ranks(x, torch.ones_like(x, dtype=torch.bool))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman ρ of two score vectors (n,); NaN when undefined (n < 2 or a constant side).

    Raises:
        ValueError: the vectors differ in length.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"spearman needs vectors of one length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return math.nan
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return math.nan if denom == 0 else max(-1.0, min(1.0, float((ra * rb).sum()) / denom))


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "median", "n"}`` over the finite values (None and NaN skipped; mean / median None when none are)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": None, "median": None, "n": 0}
    return {"mean": statistics.fmean(finite), "median": statistics.median(finite), "n": len(finite)}
