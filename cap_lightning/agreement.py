"""Agreement of the model's attribution with a prior: Spearman ρ and top-k IoU per text (docs/cap.md §3.4,
"Agreement with the prior").

Did the alignment move the student's attributions towards the prior, and how far is a CE-only model from it
anyway? ``CapModule`` measures it on training texts (the priors the student was trained on) and, with
``HeldOutPriorCallback``, on held-out test texts, for every model including the baseline (``prior_weight: 0``).

Design decisions:
- ``level="word"`` (the default): the model's token scores are summed per word (``tokens.word_sums``); the prior,
  broadcast to subwords by the collate function, is read back once per word (``tokens.broadcast_word_values``). ρ
  and IoU are then over the words the model reads. ``level="subword"`` compares the two per content token (a long
  word then counts once per subword).
- Spearman and top-k IoU are ``faithfulness.spearman_rows`` / ``faithfulness.topk_iou`` (average ranks for ties; a
  row with fewer than two units or a constant side gets ρ = 0). Rows without content tokens are left out.
- ``AgreementMetrics`` keeps sums and counts (DDP-exact means), one instance per prior.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from cap_lightning.faithfulness import Level, spearman_rows, topk_iou
from cap_lightning.tokens import broadcast_word_values, word_sums
from lmcore.choices import check_choice


class Agreement(NamedTuple):
    spearman: Tensor  # (R,) ρ per row with content
    topk_iou: Tensor  # (R,)
    rows: Tensor  # (B,) bool: the rows kept (at least one content token)


def prior_agreement(
    token_scores: Tensor,
    token_prior: Tensor,
    word_index: Tensor,
    content: Tensor,
    *,
    level: Level = "word",
    topk_fraction: float = 0.2,
) -> Agreement:
    """ρ and top-k IoU of the model's attribution vs the prior, per row with at least one content token.

    Args:
        token_scores: (B, T) the model's attribution per token (e.g. IG of the gold label).
        token_prior: (B, T) the word prior broadcast to subwords (``tokens.words_to_tokens``).
        word_index: (B, T) word of each token, -1 off words.
        content: (B, T) bool content tokens (``tokens.content_mask``).
        level: ``word`` (sum the scores per word) or ``subword``.
        topk_fraction: k of the IoU, as a fraction in (0, 1].
    """
    check_choice("level", level, Level)
    token_prior = token_prior.to(token_scores.device)
    content = content.to(token_scores.device)
    rows = content.any(-1)
    if level == "word":
        scores, present = word_sums(token_scores, word_index, content)
        prior = broadcast_word_values(token_prior, word_index, content).to(scores.device)
    else:
        scores, prior, present = token_scores, token_prior, content
    rho = spearman_rows(scores, prior, present)[rows]
    iou = topk_iou(scores, prior, present, topk_fraction)[rows]
    return Agreement(rho, iou, rows)


class AgreementMetrics(Metric):
    """Running means of ρ and top-k IoU (DDP-safe sums); ``compute()`` → ``{"spearman", "topk_iou"}`` (empty
    without values)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("spearman_sum", "iou_sum", "n"):
            self.add_state(name, torch.zeros(()), dist_reduce_fx="sum")

    def update(self, agreement: Agreement) -> None:
        self.spearman_sum += agreement.spearman.detach().float().sum()
        self.iou_sum += agreement.topk_iou.detach().float().sum()
        self.n += agreement.spearman.numel()

    def compute(self) -> dict[str, Tensor]:
        if self.n == 0:
            return {}
        return {"spearman": self.spearman_sum / self.n, "topk_iou": self.iou_sum / self.n}
