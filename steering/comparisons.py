"""Paired differences over test questions: a steered method against a reference (the base model, CAA), per metric.

Design decisions:
- Both sides are per-question outcomes on the same questions in the same order (``SteeringModule`` records them per
  example); a length or question mismatch is an error, never silently re-aligned.
- MC2 (a probability mass per question): the mean difference with a paired bootstrap interval
  (``lmcore.statistics.paired_bootstrap_interval``, questions resampled). Right / wrong outcomes (MC1, binary: every
  value 0 or 1): the same bootstrap interval of the accuracy difference, plus the exact McNemar test over the
  discordant questions (``lmcore.statistics.mcnemar_exact``) for its p-value.
- Every difference carries a p-value for multiplicity corrections (``p_value``): the exact McNemar p for right /
  wrong outcomes, the paired t test's p otherwise (``lmcore.statistics.paired_t_p_value``; the verdict stays the
  interval's). ``steering.matched_report`` adjusts them by Holm over each table.
- The verdict on probability masses is ``lmcore.statistics.verdict``: ``no difference`` whenever the interval covers
  0. On right / wrong outcomes it is the exact McNemar test at the same level (``no difference`` unless p < 1 −
  confidence, else the sign of the difference): with few discordant questions the percentile bootstrap can exclude 0
  where the exact test does not (5 to 0 discordant: bootstrap above 0, p = 0.0625).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmcore.statistics import mcnemar_exact, paired_bootstrap_interval, paired_t_p_value, verdict


@dataclass(frozen=True)
class Difference:
    """``method − reference`` on one metric over ``n`` paired questions."""

    metric: str
    mean: float
    low: float
    high: float
    n: int
    confidence: float
    p_mcnemar: float | None  # only for right / wrong outcomes
    verdict: str
    p_t: float | None = None  # paired t test, for other outcomes (n ≥ 2)

    @property
    def p_value(self) -> float | None:
        """The comparison's p-value: exact McNemar for right / wrong outcomes, else the paired t test's."""
        return self.p_mcnemar if self.p_mcnemar is not None else self.p_t

    def cell(self) -> str:
        """``+0.031 [−0.004, +0.066]`` (with ``, McNemar p 0.08`` for right / wrong outcomes)."""
        text = f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"
        return text if self.p_mcnemar is None else f"{text}, McNemar p {self.p_mcnemar:.3g}"


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def paired_difference(
    metric: str, method: Sequence[float], reference: Sequence[float], confidence: float = 0.95,
    resamples: int = 2000, seed: int = 0,
) -> Difference:  # fmt: skip
    """The paired difference ``method − reference`` of per-question ``metric`` values (module docstring)."""
    if len(method) != len(reference) or not method:
        raise ValueError(f"{metric}: paired outcomes need the same non-zero number of questions, got {len(method)} "
                         f"and {len(reference)}")  # fmt: skip
    interval = paired_bootstrap_interval(method, reference, confidence, resamples, seed)
    if not (is_binary(method) and is_binary(reference)):
        p_t = paired_t_p_value(method, reference) if len(method) > 1 else None
        return Difference(metric, interval.mean, interval.low, interval.high, interval.n, confidence, None,
                          verdict(interval), p_t)  # fmt: skip
    p = mcnemar_exact([v == 1.0 for v in method], [v == 1.0 for v in reference]).p_value
    said = (
        "no difference" if p >= 1.0 - confidence or interval.mean == 0 else "higher" if interval.mean > 0 else "lower"
    )
    return Difference(metric, interval.mean, interval.low, interval.high, interval.n, confidence, p, said)
