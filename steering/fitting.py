"""Per-example deltas for every steering method, and the vector built from them: the two halves of ``predict``.

Design decisions:
- One entry point per half, so the Lightning module and the sweep share them: ``example_deltas`` runs on a batch
  of pairs (any rank), ``vector_from_deltas`` runs once on the gathered, de-duplicated, index-sorted deltas.
- GrAInS computes IG once per example and re-uses it for every k in ``top_ks`` (only the masked no-grad passes
  repeat), so a k sweep costs one attribution pass.
- Methods: ``grains`` (attribution top-k), ``random_k`` / ``all_tokens`` (the no-attribution controls, same
  masking), ``caa`` (mean paired difference) and ``pca`` (RepE: PC1 of paired differences). Deltas are returned as
  (B, R, L, d) with R rows per example (R = 2 for ``position="last"``), so examples can be de-duplicated by index.
- ``unit_norm`` rescales each layer's vector to norm 1, so α means the same for every method and layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from steering.baselines import paired_differences
from steering.extract import GrainsConfig, extract_deltas
from steering.pairs import ContrastivePair
from steering.vectors import Aggregate, Mode, SteeringVector, build_steering_vector

METHODS = ("grains", "random_k", "all_tokens", "caa", "pca")
K_METHODS = ("grains", "random_k")

Deltas = dict[int, tuple[torch.Tensor, torch.Tensor | None]]


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")


def example_deltas(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    method: str,
    layers: Sequence[int] | None,
    config: GrainsConfig,
    top_ks: Sequence[int],
    batch_size: int = 4,
) -> tuple[list[int], Deltas]:
    """Layer ids and, per k, deltas (pos (B, R, L, d), neg (B, R, L, d) or None) for a batch of pairs."""
    check_method(method)
    B = len(pairs)
    if method in ("caa", "pca"):
        layer_ids, diffs = paired_differences(model, tokenizer, pairs, layers, batch_size)
        return layer_ids, {int(top_ks[0]): (diffs[:, None], None)}  # (B, 1, L, d)
    selection = {"grains": "attribution", "random_k": "random", "all_tokens": "all"}[method]
    out: Deltas = {}
    attributions = None
    layer_ids: list[int] = []
    for k in top_ks if method in K_METHODS else top_ks[:1]:
        cfg = replace(config, top_k=int(k), selection=selection)
        ex = extract_deltas(model, tokenizer, pairs, layers, cfg, batch_size, attributions=attributions)
        attributions = ex.attributions if method == "grains" else None
        layer_ids = ex.layers
        R = ex.deltas_pos.shape[0] // B
        out[int(k)] = (ex.deltas_pos.view(B, R, *ex.deltas_pos.shape[1:]),
                       ex.deltas_neg.view(B, R, *ex.deltas_neg.shape[1:]))  # fmt: skip
    return layer_ids, out


def vector_from_deltas(
    method: str,
    deltas_pos: torch.Tensor,
    deltas_neg: torch.Tensor | None,
    layers: Sequence[int],
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    unit_norm: bool = True,
    metadata: dict | None = None,
) -> SteeringVector:
    """The steering vector of ``method`` from gathered deltas (N, R, L, d) (or (M, L, d)) at ``layers``."""
    check_method(method)
    pos = deltas_pos.flatten(0, 1) if deltas_pos.ndim == 4 else deltas_pos  # (N·R, L, d)
    neg = None if deltas_neg is None else (deltas_neg.flatten(0, 1) if deltas_neg.ndim == 4 else deltas_neg)
    if method == "caa":
        aggregate, mode, neg = "mean", "pos", None
    elif method == "pca":
        mode, neg = "pos", None
    elif method == "all_tokens":
        mode = "pos"  # P = Q = all candidates: u⁺ − u⁻ would be 0
    vec = build_steering_vector(pos, neg, layers, aggregate, mode, {"method": method, **(metadata or {})})
    if unit_norm:
        vec = SteeringVector({k: v / v.norm().clamp_min(1e-12) for k, v in vec.vectors.items()},
                             {**vec.metadata, "unit_norm": True})  # fmt: skip
    return vec
