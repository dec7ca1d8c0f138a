"""Score-free reference points for multiple-choice metrics: what MC1 / MC2 / binary give without a model.

A steered model must beat these, not only the base model (docs/grains.md §3):
- ``constant``: every choice gets the same log-likelihood. Argmax metrics count a tie as wrong (a true answer must
  score *above* every false one), and MC2 is then the share of true answers among the choices, so a model whose
  scores collapse toward a constant drifts toward this MC2.
- ``longest``: the log-likelihood of a choice is its length in characters, so the longest answer wins. On TruthfulQA
  the true answers are often the longer, hedged ones, so a degraded model that prefers long answers gains MC1 / MC2
  without knowing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from lmcore.choices import check_choice
from steering.tasks.metrics import choice_metrics
from steering.tasks.types import MCExample

Reference = Literal["constant", "longest"]


def reference_scores(example: MCExample, kind: Reference) -> torch.Tensor:
    """The (len(choices),) scores of the ``kind`` reference for one example."""
    check_choice("reference", kind, Reference)
    if kind == "constant":
        return torch.zeros(len(example.choices), dtype=torch.float64)
    return torch.tensor([float(len(c.strip())) for c in example.choices], dtype=torch.float64)


def reference_metrics(examples: Sequence[MCExample], kind: Reference) -> dict[str, float]:
    """Mean of every target's metric over ``examples`` under the ``kind`` reference."""
    if not examples:
        raise ValueError("no examples to score")
    rows = [choice_metrics(ex, reference_scores(ex, kind)) for ex in examples]
    return {name: sum(r[name] for r in rows) / len(rows) for name in rows[0]}
