"""The unit the alignment loss compares: whole words (as the priors score them) or subword tokens (docs/cap.md §2).

Design decisions:
- Priors are word-level (one score per whitespace word, docs/cap.md §1.2); the batch carries them broadcast to every
  subword of the word (``tokens.words_to_tokens``). At ``subword`` level the loss compares that broadcast prior with
  the student's per-subword attribution, so a word split into 3 subwords counts 3 times with 3× the target mass.
- At ``word`` level (:func:`word_level`) the student's subword attributions are **summed** per word (attributions
  are additive, IG's completeness holds for the sum) and the prior is read back as one value per word, so each word
  counts once. With one subword per word both levels compare the same numbers.
- Words are indexed by ``word_index`` (``tokens.batch_word_index``) and summed by ``tokens.word_sums``, the same
  function the word-level evaluation uses; tokens off the mask (special, padding, no
  prior) add nothing, and a word none of whose tokens is in the mask is off the word mask (e.g. truncated words).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from cap_lightning.tokens import broadcast_word_values, word_sums

AlignmentLevel = Literal["word", "subword"]


def word_level(a: Tensor, p: Tensor, word_index: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Token-level ``(B, T)`` attributions, broadcast prior and mask → word-level ``(B, W)`` ones.

    Args:
        a: the student's attribution per token (differentiable; the word sums keep the graph).
        p: the prior broadcast to subwords (every subword of a word holds the word's score).
        word_index: ``(B, T)`` word of each token, -1 off words.
        mask: ``(B, T)`` bool, the tokens that count.

    Returns:
        ``(a_w, p_w, mask_w)``: per word, the sum of its masked tokens' attributions, its prior (the largest value
        over its masked tokens, i.e. the broadcast value) and whether any of its tokens is masked. ``W`` is the
        largest word index + 1 (at least 1); words past a row's last word are off ``mask_w``.
    """
    if not (a.shape == p.shape == word_index.shape == mask.shape):
        raise ValueError(
            f"a, p, word_index and mask must have one shape, got {tuple(a.shape)}, {tuple(p.shape)}, "
            f"{tuple(word_index.shape)}, {tuple(mask.shape)}"
        )
    mask = mask.to(a.device).bool() & (word_index.to(a.device) >= 0)
    a_w, mask_w = word_sums(a, word_index.to(a.device), mask)
    return a_w, broadcast_word_values(p.to(a.device), word_index.to(a.device), mask).to(a_w.dtype), mask_w
