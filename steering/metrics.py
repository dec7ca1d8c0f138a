"""A torchmetrics mean over dataset examples that counts each example exactly once across ranks.

Design decision: Lightning's distributed test sampler pads the split so every rank gets as many batches, which
replicates a few examples; a plain ``MeanMetric`` would count them twice. ``IndexedMean`` keeps (index, value)
pairs as ``cat``-reduced states, so torchmetrics gathers them from every rank, and ``compute`` keeps the first value
per index before averaging (``reduce="mean"``) or counts the distinct indices (``reduce="count"``). Both happen
inside ``compute``, which torchmetrics runs on the synced states. ``per_example`` hands the same de-duplicated
(index, value) pairs to the results writer, so paired tests over questions can be run from the record.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lmcore.choices import check_choice

Reduce = Literal["mean", "count"]


class IndexedMean(Metric):
    """Mean of per-example values keyed by dataset index; duplicates (same index) count once."""

    full_state_update = False

    def __init__(self, reduce: Reduce = "mean", **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice("reduce", reduce, Reduce)
        self.reduce = reduce
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("value", default=[], dist_reduce_fx="cat")

    def update(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """index: (B,) long dataset indices; value: (B,) per-example values."""
        index, value = torch.as_tensor(index).flatten(), torch.as_tensor(value, dtype=torch.float64).flatten()
        if index.shape != value.shape:
            raise ValueError(f"index {tuple(index.shape)} and value {tuple(value.shape)} must have the same shape")
        self.index.append(index.to(self.device, torch.long))
        self.value.append(value.to(self.device))

    def _unique(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.index, list) and not self.index:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
        index, value = dim_zero_cat(self.index), dim_zero_cat(self.value)
        order = torch.argsort(index, stable=True)
        index, value = index[order], value[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return index[first], value[first]

    def per_example(self) -> tuple[list[int], list[float]]:
        """(indices, values), one per distinct index in index order, gathered from every rank (a collective: every
        rank calls it): the paired outcomes behind the mean."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=True, should_unsync=True):
            index, value = self._unique()
        return index.cpu().tolist(), value.cpu().tolist()

    def compute(self) -> torch.Tensor:
        _, value = self._unique()
        if self.reduce == "count":
            return torch.tensor(float(value.numel()), dtype=torch.float64)
        return value.mean() if value.numel() else torch.tensor(float("nan"), dtype=torch.float64)
