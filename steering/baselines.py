"""Baselines on the GrAInS interface: CAA, RepE-style PCA, and GrAInS without attribution (random-k / all tokens).

Design decisions:
- CAA: v_l = mean_i [h_l(x ⊕ y⁺) − h_l(x ⊕ y⁻)] at the last token (no attribution, no masking), raw magnitude.
- PCA (RepE style): oriented unit PC1 of the same paired differences (``aggregate="pca"`` centres them,
  ``"pca_uncentred"`` does not). States come from the steering hook point, as for GrAInS.
- The controls reuse ``extract_deltas`` with ``selection="random"`` (seeded) or ``"all"``, so only attribution
  differs from GrAInS. With ``all`` the P and Q masks coincide, so ``mode="both"`` would be 0: use ``mode="pos"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from lmcore.padding import PaddingSide
from steering.activations import states_at
from steering.extract import GrainsConfig, fit_steering_vector, provenance
from steering.layers import resolve_layers
from steering.pairs import ContrastivePair, embed_inputs, encode_pair
from steering.vectors import Aggregate, SteeringVector, aggregate_deltas


def paired_differences(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    padding_side: PaddingSide = "left",
) -> tuple[list[int], torch.Tensor]:
    """Layer indices and h(x ⊕ y⁺) − h(x ⊕ y⁻) at the last token: (N, L, d) fp32."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty; a baseline needs at least one (prompt, preferred, dispreferred) triple")
    layer_ids = resolve_layers(model, layers)
    emb = model.get_input_embeddings()
    rows = []
    for pair in pairs:
        x, y_pos, y_neg = encode_pair(tokenizer, pair)
        xe = embed_inputs(model, x, pair.pixel_values, **pair.image_kwargs)
        with torch.no_grad():
            for y in (y_pos, y_neg):
                rows.append(torch.cat([xe, emb(y.to(emb.weight.device))]))
    h = states_at(model, rows, [-1] * len(rows), layer_ids, padding_side=padding_side, batch_size=batch_size)
    h = h.view(len(pairs), 2, len(layer_ids), -1)  # (N, ±, L, d)
    return layer_ids, h[:, 0] - h[:, 1]


def fit_caa_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    batch_size: int = 8,
) -> SteeringVector:  # fmt: skip
    """Contrastive activation addition: the mean paired difference per layer."""
    layer_ids, diffs = paired_differences(model, tokenizer, pairs, layers, batch_size)
    vectors = {layer: aggregate_deltas(diffs[:, i], "mean") for i, layer in enumerate(layer_ids)}
    meta = provenance(model, tokenizer, pairs, method="caa", aggregate="mean", layers=layer_ids, canonical=True)
    return SteeringVector(vectors, meta)


def fit_pca_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    aggregate: Aggregate = "pca", batch_size: int = 8,
) -> SteeringVector:  # fmt: skip
    """RepE-style reading vector: oriented unit PC1 of the paired differences per layer."""
    if aggregate not in ("pca", "pca_uncentred"):
        raise ValueError(f"aggregate {aggregate!r} is not one of ('pca', 'pca_uncentred')")
    layer_ids, diffs = paired_differences(model, tokenizer, pairs, layers, batch_size)
    vectors = {layer: aggregate_deltas(diffs[:, i], aggregate) for i, layer in enumerate(layer_ids)}
    meta = provenance(model, tokenizer, pairs, method="pca", aggregate=aggregate, layers=layer_ids, canonical=True)
    return SteeringVector(vectors, meta)


def fit_random_k_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None, seed: int = 0, **kwargs,
) -> SteeringVector:  # fmt: skip
    """GrAInS with k random candidate tokens as P and Q (seeded): the no-attribution control."""
    config = replace(config or GrainsConfig(), selection="random", seed=seed)
    return fit_steering_vector(model, tokenizer, pairs, layers, config, **kwargs)


def fit_all_tokens_vector(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None, **kwargs,
) -> SteeringVector:  # fmt: skip
    """GrAInS with every candidate token masked (P = Q = all); defaults to ``mode="pos"``."""
    config = replace(config or GrainsConfig(), selection="all")
    kwargs.setdefault("mode", "pos")
    return fit_steering_vector(model, tokenizer, pairs, layers, config, **kwargs)
