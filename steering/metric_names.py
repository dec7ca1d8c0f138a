"""The names of the metrics a steering test run reports, from the whole evaluation split.

Design decision: every rank creates the same metrics, up front (``SteeringModule.on_test_start``), from the whole
split rather than from the batches it happens to see. torchmetrics syncs each metric with a collective call in
``compute``; a metric created lazily on one rank only (its batches hold a target the others lack, or it has no batch
at all) would leave its peers waiting in that call.
"""

from __future__ import annotations

from collections.abc import Sequence

from steering.tasks.types import ContinuationExample, GenExample, MCExample

GENERATION_METRICS = ("judge_score", "hallucination_rate")
CONTINUATION_METRICS = ("p_positive", "positive_rate", "continuation_nll", "continuation_tokens")
SIDE_EFFECT_METRICS = ("steered/kl", "base/nll", "steered/nll")


def evaluation_metric_names(
    examples: Sequence[MCExample | GenExample], eval_base: bool = True, side_effects: bool = True
) -> list[str]:
    """``<condition>/<metric>`` per condition (``base`` when ``eval_base``, ``steered``), the side effects when
    ``side_effects`` and some example is text-only multiple choice or a continuation, and ``n_examples``; in a
    fixed order."""
    conditions = ("base", "steered") if eval_base else ("steered",)
    metrics = list(GENERATION_METRICS) if any(isinstance(ex, GenExample) for ex in examples) else []
    metrics += list(CONTINUATION_METRICS) if any(isinstance(ex, ContinuationExample) for ex in examples) else []
    metrics += dict.fromkeys(t for ex in examples if isinstance(ex, MCExample) for t in ex.targets)
    names = [f"{cond}/{metric}" for cond in conditions for metric in metrics]
    if side_effects and any(isinstance(ex, (MCExample, ContinuationExample)) and ex.pixel_values is None
                            for ex in examples):  # fmt: skip
        names += SIDE_EFFECT_METRICS
    return [*names, "n_examples"]
