"""``HybridPrior``: fuse several word-level priors, e.g. CAP Hybrid = CAP + LIME + IG (docs/cap.md §1.3, §7).

Design decisions:
- Each source is normalised per example first (``norm``): ``max`` = relu / max (canonical), ``sum`` = relu / sum,
  ``zscore_relu`` = relu of the z-score over the text's words. ``agg='rank_mean'`` replaces every source by its
  within-text ranks scaled to [0, 1] (ties averaged; ``cap_lightning.ranks``, the ranks of the Spearman metric)
  before the mean.
- Aggregation is element-wise over words: ``mean`` (canonical), ``max``, ``weighted`` (Σ wₖ pₖ / Σ wₖ) or
  ``rank_mean``; the result is renormalised to max 1.
- ``fuse_padded`` works on padded ``(K, B, T)`` tensors with a ``(B, T)`` mask; padding never leaks into a
  statistic (tests check padded == one row at a time). ``fuse_priors`` is the ragged list version.
- Sources that store results per example themselves (``ClassAwarePrior``) are called as they are; the others go
  through the per-example store (``store.lookup_or_compute``, ``example_cache_dir``) keyed by their
  ``cache_key`` (which hashes a ``.ckpt`` reference's weights) and, for sources that fine-tune their own
  reference, the training split too. So the
  ``mean`` and ``max`` hybrids of one split compute each source once. Each source's ``cache_key`` feeds the
  hybrid's, so any change to a source is a new cache entry. The data module's defaults (``set_data_defaults``)
  are forwarded to every source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from cap_lightning.priors.base import AttributionPrior
from cap_lightning.priors.store import ExampleStore, Record, example_key, lookup_or_compute, store_namespace
from lmcore.choices import check_choice
from lmcore.ranks import scaled_ranks

Aggregation = Literal["mean", "max", "weighted", "rank_mean"]
Norm = Literal["max", "sum", "zscore_relu"]


def normalise_padded(scores: Tensor, mask: Tensor, norm: Norm) -> Tensor:
    """Per-row normalisation of ``(…, T)`` scores over the masked words; zeros elsewhere."""
    check_choice("norm", norm, Norm)
    x = scores.float() * mask
    if norm == "zscore_relu":
        n = mask.sum(-1, keepdim=True).clamp_min(1)
        mean = x.sum(-1, keepdim=True) / n
        std = ((((x - mean) * mask) ** 2).sum(-1, keepdim=True) / n).sqrt()
        return torch.where(std > 0, (x - mean) / std.clamp_min(1e-12), torch.zeros_like(x)).clamp_min(0) * mask
    pos = x.clamp_min(0)
    denom = pos.amax(-1, keepdim=True) if norm == "max" else pos.sum(-1, keepdim=True)
    return torch.where(denom > 0, pos / denom.clamp_min(1e-12), torch.zeros_like(pos))


def fuse_padded(
    scores: Tensor, mask: Tensor, agg: Aggregation = "mean", norm: Norm = "max", weights: Sequence[float] | None = None
) -> Tensor:
    """Fuse ``(K, B, T)`` source scores into ``(B, T)`` in [0, 1] (max 1 per row unless all zero)."""
    check_choice("agg", agg, Aggregation)
    if scores.ndim != 3 or scores.shape[1:] != mask.shape:
        raise ValueError(f"scores must be (K, B, T) and mask (B, T); got {tuple(scores.shape)}, {tuple(mask.shape)}")
    k = scores.shape[0]
    if weights is not None and (len(weights) != k or any(w < 0 for w in weights) or sum(weights) <= 0):
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {list(weights)}")
    mask = mask.bool()
    if agg == "rank_mean":
        parts = scaled_ranks(scores.float(), mask.expand_as(scores))
    else:
        parts = normalise_padded(scores, mask.expand_as(scores), norm)
    if agg == "max":
        fused = parts.amax(0)
    else:
        w = torch.tensor(list(weights) if (agg == "weighted" and weights is not None) else [1.0] * k)
        fused = (parts * (w / w.sum())[:, None, None]).sum(0)
    return normalise_padded(fused, mask, "max")


def fuse_priors(
    per_source: Sequence[Sequence[Tensor]],
    agg: Aggregation = "mean",
    norm: Norm = "max",
    weights: Sequence[float] | None = None,
) -> list[Tensor]:
    """Ragged version: ``per_source[k][i]`` is source k's ``(n_i,)`` scores for text i."""
    if not per_source:
        raise ValueError("fuse_priors needs at least one source")
    lengths = [len(row) for row in per_source[0]]
    for k, rows in enumerate(per_source):
        if [len(r) for r in rows] != lengths:
            raise ValueError(f"source {k} has word counts {[len(r) for r in rows]}, source 0 has {lengths}")
    width = max(lengths, default=0)
    if width == 0:  # no text has a word: nothing to fuse (a max over no words is undefined)
        return [torch.zeros(0) for _ in lengths]
    padded = torch.zeros(len(per_source), len(lengths), width)
    for k, rows in enumerate(per_source):
        for i, row in enumerate(rows):
            padded[k, i, : len(row)] = row
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    fused = fuse_padded(padded, mask, agg, norm, weights)
    return [fused[i, :n] for i, n in enumerate(lengths)]


class HybridPrior(AttributionPrior):
    """Element-wise fusion of several priors (CAP Hybrid = ``[ClassAwarePrior, LIMEPrior, IGPrior]``).

    Args:
        sources: the priors to fuse.
        agg: ``mean`` | ``max`` | ``weighted`` | ``rank_mean``.
        norm: per-source normalisation ``max`` | ``sum`` | ``zscore_relu``.
        weights: per-source weights for ``agg='weighted'`` (default equal).
        example_cache_dir: per-example store for the sources' scores (None: off).
    """

    runtime_args = ("example_cache_dir",)
    cache_name = "cap_lightning.hybrid.HybridPrior"

    def __init__(
        self,
        sources: list[AttributionPrior],
        agg: Aggregation = "mean",
        norm: Norm = "max",
        weights: list[float] | None = None,
        example_cache_dir: str | None = "cache/prior_examples",
    ) -> None:
        if not sources or not all(isinstance(s, AttributionPrior) for s in sources):
            raise ValueError(f"sources must be a non-empty list of AttributionPrior, got {sources!r}")
        check_choice("agg", agg, Aggregation)
        check_choice("norm", norm, Norm)
        if weights is not None and (len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"weights must be {len(sources)} non-negative numbers with a positive sum, got {weights}")
        if weights is not None and agg != "weighted":
            raise ValueError(f"weights are only used with agg='weighted', got agg={agg!r}")
        self.sources, self.agg, self.norm, self.weights = list(sources), agg, norm, weights
        self.example_cache_dir = example_cache_dir
        self.store = ExampleStore(example_cache_dir) if example_cache_dir else None
        self._namespaces: list[str | None] = [None] * len(self.sources)

    def set_data_defaults(self, teacher_prompt: Any = None, label_names: Sequence[str] | None = None) -> None:
        for source in self.sources:
            source.set_data_defaults(teacher_prompt=teacher_prompt, label_names=label_names)

    def prepare(self, texts, labels, num_labels, device, label_names=None) -> None:
        split = store_namespace(list(texts), [int(y) for y in labels])
        for k, source in enumerate(self.sources):
            source.prepare(texts, labels, num_labels, device, label_names=label_names)
            if self.store is not None and not getattr(source, "caches_examples", False):
                own_reference = source.config().get("fine_tune_epochs", 0) > 0  # scores depend on the split
                parts = [source.cache_key(), list(label_names or []), split if own_reference else None]
                self._namespaces[k] = store_namespace(*parts)

    def release(self) -> None:
        for source in self.sources:
            source.release()

    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        per_source = [self._source_scores(k, texts, labels) for k in range(len(self.sources))]
        return fuse_priors(per_source, self.agg, self.norm, self.weights)

    def _source_scores(self, k: int, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        source, namespace = self.sources[k], self._namespaces[k]
        if namespace is None or self.store is None:
            return source(texts, labels)
        keys = [example_key(namespace, t, int(y)) for t, y in zip(texts, labels)]

        def compute(todo: list[int]) -> list[Record]:
            fresh = source([texts[i] for i in todo], [labels[i] for i in todo])
            return [{"prior": scores.tolist()} for scores in fresh]

        records = lookup_or_compute(keys, texts, compute, self.store)
        return [torch.tensor(r["prior"], dtype=torch.float32) for r in records]

    def diagnostics(self, texts: Sequence[str], labels: Sequence[int]) -> dict[str, list] | None:
        merged: dict[str, list] = {}
        for source in self.sources:
            found = source.diagnostics(texts, labels)
            if found:
                merged |= {f"{type(source).__name__}/{k}": v for k, v in found.items()}
        return merged or None
