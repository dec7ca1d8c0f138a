"""Priors cover only what the student reads: the words within its first ``max_length`` tokens.

A prior is one score per word of a training text, but the student truncates each text to ``max_length`` tokens, so
scores of the words past it are never used, and computing them can dominate the cost (CAP's teacher scores a
masked variant per word: a 5,000-word text is ~5,000 forwards of ~5,000 tokens). ``PriorCacheCallback`` therefore
gives every prior the *visible* text (its first words, as many as the student reads; the text itself when nothing
is cut) and pads the result with zeros back to the full word count, so word ``i`` of a prior is still word ``i``
of the student's word index (``tokens.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cap_lightning.tokens import split_words


def visible_texts(texts: Sequence[str], counts: Sequence[int]) -> list[str]:
    """Each text cut to its first ``counts[i]`` words (unchanged when it has no more words than that)."""
    out = []
    for text, count in zip(texts, counts, strict=True):
        words = split_words(text)
        out.append(text if count >= len(words) else " ".join(words[:count]))
    return out


def pad_to_words(priors: Sequence[Tensor], n_words: Sequence[int]) -> list[Tensor]:
    """Each prior padded with zeros to ``n_words[i]`` values (the words the student does not read)."""
    out = []
    for prior, n in zip(priors, n_words, strict=True):
        if prior.numel() > n:
            raise ValueError(f"a prior has {prior.numel()} values for a text of {n} words")
        out.append(
            torch.cat([prior.reshape(-1).float(), torch.zeros(n - prior.numel())]) if prior.numel() < n else prior
        )
    return out


def truncation_warning(counts: Sequence[int], n_words: Sequence[int], max_length: int | None) -> str | None:
    """A message counting the texts the student truncates, or None when it reads every word."""
    cut = sum(c < n for c, n in zip(counts, n_words, strict=True))
    if not cut:
        return None
    verb = "text is" if cut == 1 else "texts are"
    return (
        f"{cut} of {len(counts)} training {verb} longer than the student's max_length={max_length} tokens: their "
        "priors cover only the words the student reads (the other words get prior 0, and are not computed); "
        "raise the data module's max_length to train on more of each text"
    )
