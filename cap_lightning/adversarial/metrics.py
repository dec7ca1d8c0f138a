"""Robustness metrics: clean accuracy, accuracy under attack, attack success rate (pure functions).

Definitions (TextAttack's, generalised to any evaluated model):
- clean accuracy = mean(pred(original_text) == label) over all rows;
- accuracy under attack = mean(pred(text) == label) over all rows (rows the attack skipped keep the clean text);
- attack success rate = #(clean correct and attacked wrong) / #(clean correct), i.e. successful / attacked, where
  only correctly classified examples are attacked. Undefined (NaN) when nothing is clean-correct.

Design decisions:
- Two entry points with one result type: :func:`robustness_from_predictions` for a model evaluated on the split
  (the victim itself or, for a transfer attack, any other model), and :func:`robustness_from_statuses` for the
  generation-time figures recorded in the split file (``successful``/``failed``/``skipped`` against the victim).
  On the victim both give identical numbers, which the tests check.
- Plain Python sequences in, a frozen dataclass out; no torch, so the functions are usable from scripts and reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from cap_lightning.adversarial.format import ATTACK_STATUSES


@dataclass(frozen=True)
class RobustnessReport:
    """Counts and rates of one evaluation on an attacked split.

    Attributes:
        n: rows.
        n_clean_correct: rows classified correctly on the clean text (= rows that were attacked).
        n_attacked_correct: rows classified correctly on the attacked text.
        n_successful: clean-correct rows whose attacked text is misclassified.
    """

    n: int
    n_clean_correct: int
    n_attacked_correct: int
    n_successful: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("a robustness report needs at least one row")
        if not 0 <= self.n_successful <= self.n_clean_correct <= self.n:
            raise ValueError(f"inconsistent counts: successful={self.n_successful}, clean correct="
                             f"{self.n_clean_correct}, n={self.n}")  # fmt: skip
        if not 0 <= self.n_attacked_correct <= self.n:
            raise ValueError(f"n_attacked_correct={self.n_attacked_correct} outside 0..{self.n}")

    @property
    def clean_accuracy(self) -> float:
        return self.n_clean_correct / self.n

    @property
    def attacked_accuracy(self) -> float:
        """Accuracy under attack."""
        return self.n_attacked_correct / self.n

    @property
    def attack_success_rate(self) -> float:
        """Successful / attacked (= clean-correct); NaN when nothing was attacked."""
        return self.n_successful / self.n_clean_correct if self.n_clean_correct else math.nan

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Rates and counts as a flat dict of floats, keys prefixed (e.g. ``adv/``) for a logger."""
        values = {k: float(v) for k, v in asdict(self).items()}
        values |= {
            "clean_acc": self.clean_accuracy,
            "attacked_acc": self.attacked_accuracy,
            "attack_success_rate": self.attack_success_rate,
        }
        return {f"{prefix}{k}": v for k, v in values.items()}


def robustness_from_predictions(
    labels: Sequence[int], clean_pred: Sequence[int], attacked_pred: Sequence[int]
) -> RobustnessReport:
    """Metrics of a model from its predictions on the clean and on the attacked text of each row.

    Raises:
        ValueError: empty input or sequences of different lengths.
    """
    if not (len(labels) == len(clean_pred) == len(attacked_pred)):
        raise ValueError(
            f"labels ({len(labels)}), clean_pred ({len(clean_pred)}) and attacked_pred ({len(attacked_pred)}) "
            "must have the same length"
        )
    if not labels:
        raise ValueError("no rows: cannot compute robustness metrics of an empty split")
    clean_ok = [int(p) == int(y) for p, y in zip(clean_pred, labels)]
    attacked_ok = [int(p) == int(y) for p, y in zip(attacked_pred, labels)]
    return RobustnessReport(
        n=len(labels),
        n_clean_correct=sum(clean_ok),
        n_attacked_correct=sum(attacked_ok),
        n_successful=sum(c and not a for c, a in zip(clean_ok, attacked_ok)),
    )


def robustness_from_statuses(statuses: Sequence[str]) -> RobustnessReport:
    """Generation-time metrics against the victim from TextAttack statuses.

    ``skipped`` = the victim misclassified the clean text (not attacked, counts as wrong under attack);
    ``failed`` = attacked, prediction unchanged; ``successful`` = attacked and misclassified.

    Raises:
        ValueError: empty input or a status outside ``ATTACK_STATUSES``.
    """
    bad = sorted({s for s in statuses if s not in ATTACK_STATUSES})
    if bad:
        raise ValueError(f"statuses {bad} are not in {ATTACK_STATUSES}")
    if not statuses:
        raise ValueError("no rows: cannot compute robustness metrics of an empty split")
    n_successful = sum(s == "successful" for s in statuses)
    n_failed = sum(s == "failed" for s in statuses)
    return RobustnessReport(
        n=len(statuses),
        n_clean_correct=n_successful + n_failed,
        n_attacked_correct=n_failed,
        n_successful=n_successful,
    )
