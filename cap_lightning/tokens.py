"""Word ↔ subword alignment: priors are word-level, attributions are subword-level.

Design decisions:
- A *word* is a maximal run of non-whitespace characters (``text.split()``), the unit every prior scores.
- Subwords are assigned to words through the fast tokenizer's ``offset_mapping``, so the same code serves WordPiece
  (BERT, MiniLM) and byte-level BPE (RoBERTa, GPT-2), whose ``word_ids()`` disagree on what a word is.
- Special and padding tokens get word index -1 and are excluded from every attribution loss.
- A word's prior is broadcast to all of its subwords (docs/cap.md §1.2, canonical); model attributions are summed back
  from subwords to words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

_WORD = re.compile(r"\S+")


def split_words(text: str) -> list[str]:
    """The words of ``text`` as every prior sees them (whitespace split)."""
    return text.split()


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of each whitespace word of ``text``."""
    return [m.span() for m in _WORD.finditer(text)]


def token_word_index(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Word index of each token, -1 for tokens that cover no character (special tokens, padding).

    Args:
        offsets: ``(start, end)`` character offsets per token, as in the tokenizer's ``offset_mapping``.
        spans: word spans from :func:`word_spans`.
    """
    index = []
    w = 0
    for start, end in offsets:
        if end <= start:
            index.append(-1)
            continue
        # tokens come in text order; advance to the word whose span holds the token's last character
        while w < len(spans) - 1 and spans[w][1] <= start:
            w += 1
        inside = spans and spans[w][0] < end and start < spans[w][1]
        index.append(w if inside else -1)
    return index


def batch_word_index(tokenizer, texts: Sequence[str], max_length: int) -> tuple[dict[str, Tensor], Tensor]:
    """Tokenize ``texts`` (padded, truncated) and return the encoding plus ``word_index`` (B, T), -1 off words."""
    enc = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = enc.pop("offset_mapping").tolist()  # (B, T, 2)
    word_index = torch.tensor(
        [token_word_index(off, word_spans(t)) for off, t in zip(offsets, texts, strict=True)], dtype=torch.long
    )
    word_index[enc["attention_mask"] == 0] = -1
    return dict(enc), word_index


def words_to_tokens(word_values: Sequence[Tensor], word_index: Tensor) -> Tensor:
    """Broadcast per-word values to subwords: (B, T) with 0 where ``word_index`` is -1.

    Args:
        word_values: one ``(n_words_b,)`` tensor per row.
        word_index: ``(B, T)`` from :func:`batch_word_index`.
    """
    out = torch.zeros(word_index.shape, dtype=torch.float32)
    for b, values in enumerate(word_values):
        idx = word_index[b]
        keep = (idx >= 0) & (idx < len(values))
        out[b, keep] = values.to(torch.float32)[idx[keep]]
    return out


def tokens_to_words(token_values: Tensor, word_index: Tensor, n_words: Sequence[int]) -> list[Tensor]:
    """Sum subword values into their words: one ``(n_words_b,)`` tensor per row; truncated words get 0."""
    out = []
    for b, n in enumerate(n_words):
        idx = word_index[b]
        keep = idx >= 0
        words = torch.zeros(n, dtype=token_values.dtype, device=token_values.device)
        words.index_add_(0, idx[keep].to(token_values.device), token_values[b, keep])
        out.append(words)
    return out


def content_mask(batch: Mapping[str, Tensor]) -> Tensor:
    """(B, T) bool: attended tokens that belong to a word (``word_index >= 0``), i.e. not special, not padding."""
    if "word_index" not in batch:
        raise ValueError("batch has no 'word_index' (needed to tell content tokens from special tokens)")
    return (batch["word_index"] >= 0) & (batch["attention_mask"] > 0)


def visible_word_counts(tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 512) -> list[int]:
    """How many leading words of each text the student reads: the words with a token among the first
    ``max_length`` tokens (special tokens included), as :func:`batch_word_index` truncates them."""
    counts = []
    for i in range(0, len(texts), batch_size):
        _, word_index = batch_word_index(tokenizer, texts[i : i + batch_size], max_length)
        counts.extend((word_index.max(dim=1).values + 1).clamp(min=0).tolist())
    return counts


def _word_slots(word_index: Tensor, content: Tensor) -> tuple[Tensor, int]:
    """Word index per token with every non-content token sent to one extra slot ``W``; and ``W``."""
    n_words = int(word_index.max()) + 1 if word_index.numel() else 0
    n_words = max(n_words, 1)
    return torch.where(content, word_index, torch.full_like(word_index, n_words)), n_words


def word_sums(token_values: Tensor, word_index: Tensor, content: Tensor) -> tuple[Tensor, Tensor]:
    """Batched word-level view of subword scores (docs/cap.md §2, §3.4, word level): the sum of each word's content
    tokens, ``(B, W)`` float, and which words have at least one content token, ``(B, W)`` bool (the words the model
    reads; ``W`` = the largest word index + 1). Values off content are ignored, NaN included. Differentiable in
    ``token_values`` (the word-level alignment loss trains through it)."""
    slots, n_words = _word_slots(word_index, content)
    slots = slots.to(token_values.device)
    values = torch.where(content.to(token_values.device), token_values.float(), 0.0)
    sums = torch.zeros(slots.shape[0], n_words + 1, device=values.device).scatter_add(-1, slots, values)
    counts = torch.zeros_like(sums).scatter_add_(-1, slots, content.to(values.device).float())
    return sums[:, :n_words], counts[:, :n_words] > 0


def broadcast_word_values(token_values: Tensor, word_index: Tensor, content: Tensor) -> Tensor:
    """Undo :func:`words_to_tokens` on a batch: the value of each word, ``(B, W)``, read as the largest value over
    its content tokens (all equal for a broadcast prior); 0 for words without content tokens."""
    slots, n_words = _word_slots(word_index, content)
    slots = slots.to(token_values.device)
    values = torch.where(content.to(token_values.device), token_values.detach().float(), -torch.inf)
    out = torch.full((slots.shape[0], n_words + 1), -torch.inf, device=values.device)
    out = out.scatter_reduce(-1, slots, values, reduce="amax")
    return torch.where(torch.isfinite(out), out, 0.0)[:, :n_words]
