"""Cross-fitting folds of a training split: the fold of each training text (docs/cap.md §1.3, "Cross-fitted
references").

With ``cross_fit_folds = K`` (``IGPrior``, ``LIMEPrior``) the reference of fold i is fine-tuned on every fold but i
and scores the texts of fold i only, so no training text's prior comes from a reference trained on it.

Design decisions:
- The unit is the distinct text: all copies of a text (with the same label or another one) share a fold, so a
  reference never trains on a copy of a text it scores. A text's stratum is its label (the smallest one when its
  copies disagree).
- Stratified: within a stratum the texts are ordered by ``sha256(seed, text)`` and dealt to the folds in turn; the
  deal goes through the strata in label order and each stratum starts at the fold where the last one stopped. So
  fold sizes (in distinct texts) differ by at most one within every stratum, and in total.
- Deterministic in the seed and the (text, label) pairs, whatever their order; another seed gives other folds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def check_folds(folds: int) -> None:
    """``folds`` must be an integer >= 2: fold i's reference trains on the others, so one fold leaves it nothing."""
    if isinstance(folds, bool) or not isinstance(folds, int):
        raise TypeError(f"cross_fit_folds must be an integer >= 2 or null, got {folds!r}")
    if folds == 1:
        raise ValueError(
            "cross_fit_folds=1 leaves the reference no text to fine-tune on (its one fold is the whole split); "
            "use null for one reference fine-tuned on all training texts, or >= 2 folds"
        )
    if folds < 2:
        raise ValueError(
            f"cross_fit_folds must be >= 2 (reference i fine-tuned on every fold but i) or null (one reference for "
            f"all texts), got {folds}"
        )


def _order(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\n{text}".encode()).hexdigest()


def assign_folds(texts: Sequence[str], labels: Sequence[int], folds: int, seed: int = 0) -> dict[str, int]:
    """The fold (``0 … folds-1``) of every distinct text of ``texts``, stratified by label.

    Args:
        texts: the training texts (repeats allowed: they share a fold).
        labels: the label of each text.
        folds: number of folds, >= 2 and at most the number of distinct texts (every fold holds a text).
        seed: seeds the order in which each stratum's texts are dealt.
    """
    check_folds(folds)
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts and {len(labels)} labels")
    stratum: dict[str, int] = {}
    for text, label in zip(texts, labels):
        stratum[text] = min(int(label), stratum.get(text, int(label)))
    if folds > len(stratum):
        raise ValueError(
            f"cross_fit_folds={folds} needs at least {folds} distinct training texts (one per fold), got "
            f"{len(stratum)}; use fewer folds or null"
        )
    by_label: dict[int, list[str]] = {}
    for text, label in stratum.items():
        by_label.setdefault(label, []).append(text)
    fold_of: dict[str, int] = {}
    dealt = 0
    for label in sorted(by_label):
        for text in sorted(by_label[label], key=lambda t: _order(seed, t)):
            fold_of[text] = dealt % folds
            dealt += 1
    return fold_of


def fold_rows(fold_of: dict[str, int], texts: Sequence[str], fold: int) -> list[int]:
    """Rows of ``texts`` that fold ``fold``'s reference trains on: those of every other fold, in split order."""
    return [i for i, text in enumerate(texts) if fold_of[text] != fold]
