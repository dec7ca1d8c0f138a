"""Word-deletion masks for perturbation priors (CAP and LIME; docs/cap.md §1.2 step 1, §7).

Design decisions:
- A mask row is a bool vector over the whitespace words of one text: ``True`` = word kept. Row 0 is always the
  unperturbed text.
- ``loo``: row 0 + the n leave-one-word-out rows. ``lime``: row 0 + random deletions, LIME style: the number of
  deleted words r ~ U{1..n−1}, then r words uniformly. ``loo+lime`` (default): row 0 + LOO + random rows up to
  ``n_samples`` rows in all (LOO rows are always kept, so long texts get n + 1 rows).
- When 2ⁿ ≤ ``n_samples`` the masks are all 2ⁿ subsets, enumerated (exact, no sampling), whatever the strategy.
- Sampling is deterministic per (seed, text): a generator seeded from a hash of both, so every run, seed of the
  few-shot split and process computes the same masks for the same text.
- A one-word text has the masks [1], [0]; a text with no words has one empty row (callers give it an empty prior).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from cap_lightning.tokens import split_words
from lmcore.choices import check_choice

MaskStrategy = Literal["loo", "lime", "loo+lime"]


def text_seed(seed: int, text: str) -> int:
    """A 63-bit generator seed from (seed, text)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{text}".encode()).digest()[:8], "little") >> 1


def _all_subsets(n: int) -> Tensor:
    rows = [[True] * n] + [[bool(b) for b in bits] for bits in itertools.product((1, 0), repeat=n)][1:]
    return torch.tensor(rows, dtype=torch.bool).reshape(2**n, n)


def sample_masks(
    n_words: int, strategy: MaskStrategy = "loo+lime", n_samples: int = 64, seed: int = 0, text: str = ""
) -> Tensor:
    """Masks ``(M, n_words)`` bool for one text; see the module docstring for the design."""
    check_choice("mask strategy", strategy, MaskStrategy)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 (the original text and at least one perturbation), got {n_samples}")
    n = n_words
    if n == 0:
        return torch.ones(1, 0, dtype=torch.bool)
    if n < 31 and 2**n <= n_samples:
        return _all_subsets(n)
    rows = [torch.ones(n, dtype=torch.bool)]
    if strategy in ("loo", "loo+lime"):
        rows.extend(~torch.eye(n, dtype=torch.bool))
    if strategy in ("lime", "loo+lime"):
        g = torch.Generator().manual_seed(text_seed(seed, text))
        for _ in range(max(0, n_samples - len(rows))):
            r = int(torch.randint(1, n, (1,), generator=g))  # words deleted, 1..n-1
            keep = torch.ones(n, dtype=torch.bool)
            keep[torch.randperm(n, generator=g)[:r]] = False
            rows.append(keep)
    return torch.stack(rows)


def apply_mask(words: list[str], keep: Tensor, mask_token: str = "delete") -> str:
    """The perturbed text: deleted words removed (``mask_token='delete'``) or replaced by ``mask_token``."""
    if mask_token == "delete":
        return " ".join(w for w, k in zip(words, keep.tolist()) if k)
    return " ".join(w if k else mask_token for w, k in zip(words, keep.tolist()))


def perturb(
    texts: Sequence[str], strategy: MaskStrategy, n_samples: int, seed: int, mask_token: str = "delete"
) -> tuple[list[Tensor], list[str]]:
    """The masks of every text and all their perturbed texts, text after text (CAP and LIME query their black box
    with the variants of a whole chunk at once)."""
    masks, variants = [], []
    for text in texts:
        words = split_words(text)
        m = sample_masks(len(words), strategy, n_samples, seed, text)
        masks.append(m)
        variants.extend(apply_mask(words, row, mask_token) for row in m)
    return masks, variants
