"""Per-example metrics of a multiple-choice example from the log-likelihoods of its choices.

Design decision: ``mc2`` is the normalised probability mass on the true answers (TruthfulQA's MC2); every other
target is argmax accuracy (a true answer scores above every false one; MC1 and binary have one true answer).
"""

from __future__ import annotations

import torch

from steering.tasks.types import MCExample

MASS_METRICS = ("mc2",)


def choice_metrics(example: MCExample, scores: torch.Tensor) -> dict[str, float]:
    """Per-example metric values from the log-likelihoods ``scores`` (len(choices),) of its choices."""
    out = {}
    for name, (true, false) in example.targets.items():
        s_true, s_false = scores[list(true)].double(), scores[list(false)].double()
        if name in MASS_METRICS:
            p = torch.cat([s_true, s_false]).softmax(0)
            out[name] = float(p[: len(true)].sum())
        else:
            out[name] = float(s_true.max() > s_false.max())
    return out
