"""Prior controls: the same training with a prior that keeps a real prior's shape but not its information
(docs/cap.md §2, "Controls").

A gain from a prior only means something against a control that goes through the same code path: the same texts,
the same rows left out, the same number of words with mass, the same loss. Two controls derive from any prior:

- ``uniform``: every word the student reads gets the same score (1): "attend to all words", no ranking.
- ``shuffled``: the prior's own word scores, permuted within each text: the same multiset of scores (so the same
  sparsity and the same target entropy), on the wrong words.

Design decisions:
- Controls apply to the words the student reads (the first ``n_visible`` words, ``visible.py``); the words past
  ``max_length`` keep their 0. A prior that is zero on every word stays zero (the row stays left out of the loss,
  as for the real prior, ``losses.informative_rows``).
- ``shuffled`` is seeded per example by ``(seed, index)``, ``index`` being the example's position in the training
  split: the same permutation every epoch, on every rank and in every run with the same split. It draws a uniform
  permutation among those that change the text's scores (a permutation that leaves every score in place would be
  no control); a text whose scores are all equal cannot change and is returned as it is.
- Controls are applied where priors are attached (``PriorCacheCallback``), after the cache: the cached prior is the
  real one, and the cache key does not depend on the control.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from lmcore.choices import check_choice

PriorControl = Literal["none", "uniform", "shuffled"]
_MAX_DRAWS = 64  # a permutation that moves a non-constant text is drawn with probability >= 1/2 per try


def _generator(seed: int, index: int) -> torch.Generator:
    digest = hashlib.sha256(f"prior-control:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def uniform_prior(prior: Tensor, n_visible: int) -> Tensor:
    """1 on each of the first ``n_visible`` words, 0 after; an all-zero prior stays all zero."""
    out = torch.zeros_like(prior, dtype=torch.float32)
    if bool((prior[:n_visible] > 0).any()):
        out[:n_visible] = 1.0
    return out


def shuffled_prior(prior: Tensor, n_visible: int, index: int, seed: int) -> Tensor:
    """The first ``n_visible`` scores of ``prior`` permuted, deterministically per ``(seed, index)``; the scores
    move whenever they are not all equal (see the module docstring)."""
    head = prior[:n_visible].float()
    out = prior.clone().float()
    if head.numel() < 2 or bool((head == head[0]).all()):
        return out
    generator = _generator(seed, index)
    for _ in range(_MAX_DRAWS):
        moved = head[torch.randperm(head.numel(), generator=generator)]
        if not torch.equal(moved, head):
            break
    else:  # practically unreachable; a rotation by one moves any non-constant vector
        moved = head.roll(1)
    out[:n_visible] = moved
    return out


def control_priors(
    priors: Sequence[Tensor], control: PriorControl, seed: int = 0, n_visible: Sequence[int] | None = None
) -> list[Tensor]:
    """Apply ``control`` to the prior of every training example (``priors[i]`` is example ``i``'s).

    Args:
        priors: one ``(n_words_i,)`` prior per example, in training-split order.
        control: ``none`` (the priors unchanged) | ``uniform`` | ``shuffled``.
        seed: the ``shuffled`` seed.
        n_visible: words the student reads per example (None: all words).
    """
    check_choice("control", control, PriorControl)
    counts = [p.numel() for p in priors] if n_visible is None else list(n_visible)
    if len(counts) != len(priors):
        raise ValueError(f"{len(counts)} visible-word counts for {len(priors)} priors")
    if control == "none":
        return list(priors)
    if control == "uniform":
        return [uniform_prior(p, n) for p, n in zip(priors, counts)]
    return [shuffled_prior(p, n, i, seed) for i, (p, n) in enumerate(zip(priors, counts))]
