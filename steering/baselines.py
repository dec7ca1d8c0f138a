"""Baselines on the GrAInS interface: CAA, RepE-style PCA, and GrAInS without attribution (random-k / all tokens).

Each is ``fit_vector`` with its method from ``steering.methods``, so it gives the vector ``SteeringModule`` gives for
the same method (unit norm per layer by default: α means the same for every method):
- CAA: the mean paired difference h(x ⊕ y⁺) − h(x ⊕ y⁻) at the last token (no attribution, no masking).
- PCA (RepE style): oriented PC1 of the same paired differences (``aggregate="pca"`` centres them,
  ``"pca_uncentred"`` does not).
- The controls reuse ``extract_deltas`` with ``selection="random"`` (seeded) or ``"all"``, so only attribution
  differs from GrAInS. With ``all`` the P and Q masks coincide, so the mode is ``pos``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from torch import nn

from steering.extract import GrainsConfig
from steering.fitting import fit_vector
from steering.pairs import ContrastivePair
from steering.vectors import Aggregate, Mode, SteeringVector


def fit_caa_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    batch_size: int = 8, unit_norm: bool = True,
) -> SteeringVector:  # fmt: skip
    """Contrastive activation addition: the mean paired difference per layer (rescaled to norm 1 by default)."""
    return fit_vector(model, tokenizer, pairs, "caa", layers, unit_norm=unit_norm, batch_size=batch_size)


def fit_pca_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    aggregate: Aggregate = "pca", batch_size: int = 8, unit_norm: bool = True,
) -> SteeringVector:  # fmt: skip
    """RepE-style reading vector: oriented unit PC1 of the paired differences per layer."""
    return fit_vector(model, tokenizer, pairs, "pca", layers, aggregate=aggregate, unit_norm=unit_norm,
                      batch_size=batch_size)  # fmt: skip


def fit_random_k_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None, seed: int = 0, aggregate: Aggregate = "pca", mode: Mode = "both",
    unit_norm: bool = True, batch_size: int = 4,
) -> SteeringVector:  # fmt: skip
    """GrAInS with k random candidate tokens as P and Q (seeded): the no-attribution control."""
    config = replace(config or GrainsConfig(), seed=seed)
    return fit_vector(model, tokenizer, pairs, "random_k", layers, config, aggregate, mode, unit_norm, batch_size)


def fit_all_tokens_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None, aggregate: Aggregate = "pca", unit_norm: bool = True, batch_size: int = 4,
) -> SteeringVector:  # fmt: skip
    """GrAInS with every candidate token masked (P = Q = all); the mode is ``pos``."""
    return fit_vector(model, tokenizer, pairs, "all_tokens", layers, config, aggregate, "pos", unit_norm, batch_size)
