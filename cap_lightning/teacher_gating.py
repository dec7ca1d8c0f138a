"""Teacher gating: use a teacher-based prior only on the texts where the teacher gets the gold label right
(docs/cap.md §2, §4a #7).

Design decisions:
- A CAP prior explains the teacher's confidence in the **gold** label. Where the teacher would pick another label
  (its gold-label rank on the unmasked text is > 0), the prior explains a confidence the teacher does not have, and
  a weak teacher can be pushed to rationalise the gold label from weak cues (docs/cap.md §4a #7).
- ``prior_mask: all`` (default) keeps every row, as before. ``teacher_correct`` keeps a row only when its gold rank
  is 0; the other rows are left out of the alignment loss (they still train with cross-entropy).
- For a hybrid with a CAP source the whole fused row is gated by the CAP teacher (its CAP part cannot be taken
  out of an already fused and renormalised prior); with several teacher sources a row is kept only when every
  teacher ranks the gold label first. The ranks come from the prior's stored diagnostics (``priors.callback``).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

PriorMask = Literal["all", "teacher_correct"]


def teacher_gate(gold_rank: Tensor | None, prior_mask: PriorMask, n_rows: int) -> Tensor | None:
    """(B,) bool of the rows whose prior may be used, or None when every row may (``prior_mask='all'``).

    Args:
        gold_rank: ``(B,)`` the teacher's rank of the gold label per row (0 = the teacher would pick it).
        prior_mask: ``all`` | ``teacher_correct``.
        n_rows: the batch size, to check ``gold_rank`` against.

    Raises:
        ValueError: ``teacher_correct`` without gold ranks, or ranks of the wrong length.
    """
    if prior_mask == "all":
        return None
    if gold_rank is None:
        raise ValueError(
            "prior_mask='teacher_correct' needs the teacher's gold-label rank of every training text "
            "(batch['gold_rank']), which only teacher priors (ClassAwarePrior, or a HybridPrior with one) provide; "
            "use prior_mask='all' for this prior"
        )
    if gold_rank.shape != (n_rows,):
        raise ValueError(f"gold_rank has shape {tuple(gold_rank.shape)}, expected ({n_rows},)")
    return gold_rank == 0
