"""Per-example deltas for every steering method, and the vector built from them: the two halves of every fit.

Design decisions:
- One entry point per half, shared by the library (``fit_vector`` and the ``fit_*`` wrappers), the Lightning module
  and the sweep: ``example_deltas`` runs on a batch of pairs (any rank), ``vector_from_deltas`` runs once on the
  gathered, de-duplicated, index-sorted deltas. What a method reads and forces comes from ``steering.methods``.
- GrAInS computes IG once per example and re-uses it for every k in ``top_ks`` (only the masked no-grad passes
  repeat), so a k sweep costs one attribution pass.
- Deltas are returned as (B, R, L, d) with R rows per example (R = 2 for ``position="last"``), so examples can be
  de-duplicated by index.
- ``unit_norm`` (default, on every path) rescales each layer's vector to norm 1, so α means the same for every method
  and layer.
- The IG convergence gate (``GrainsConfig.max_completeness_error``): ``example_deltas`` returns each example's
  completeness error; ``fit_vector`` (library) and the Lightning writer drop the examples above the bound with the
  same pure function (``steering.completeness_gate``) and record the count in the vector's metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import NamedTuple

import torch
from torch import nn

from steering.completeness_gate import apply_gate, gate_warning
from steering.differences import paired_differences
from steering.extract import GrainsConfig, effective_top_k, extract_deltas, provenance
from steering.layer_norms import median_layer_norms
from steering.layers import find_decoder_layers, model_hidden_size, resolve_layers
from steering.methods import get_method, method_for_selection
from steering.pairs import ContrastivePair, check_pairs, identical_pairs
from steering.vectors import Aggregate, Mode, SteeringVector, build_steering_vector

Deltas = dict[int, tuple[torch.Tensor, torch.Tensor | None]]


class ExampleDeltas(NamedTuple):
    """``example_deltas``'s result: layer ids, per k the deltas (pos (B, R, L, d), neg or None), IG diagnostics."""

    layers: list[int]
    deltas: Deltas
    completeness_errors: list[float]
    effective_top_k: dict | None = None  # of the first k (the vector's); None for the paired-difference methods
    k_used: torch.Tensor | None = None  # (B, R) text k used per delta row of the first k; None where k does not apply
    errors: torch.Tensor | None = None  # (B,) float64 IG completeness error per example (NaN: none); None: no IG


def random_deltas(seed: int, n_layers: int, d: int) -> torch.Tensor:
    """One example's delta of the random-direction control: (L, d) standard Gaussian from ``seed`` alone."""
    return torch.randn(n_layers, d, generator=torch.Generator().manual_seed(seed))


def example_deltas(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    method: str,
    layers: Sequence[int] | None,
    config: GrainsConfig,
    top_ks: Sequence[int],
    batch_size: int = 4,
    indices: Sequence[int] | None = None,
) -> ExampleDeltas:
    """Layer ids and, per k, deltas (pos (B, R, L, d), neg (B, R, L, d) or None) for a batch of pairs.

    ``indices``: the pairs' dataset indices (seeds of the random-k draw; default ``0 … B-1``).
    """
    spec = get_method(method)
    B = len(pairs)
    if spec.deltas == "random":
        layer_ids = resolve_layers(model, layers)
        d = model_hidden_size(model)
        rows = [random_deltas(config.seed + int(i), len(layer_ids), d) for i in (indices or range(B))]
        return ExampleDeltas(layer_ids, {int(top_ks[0]): (torch.stack(rows)[:, None], None)}, [])  # (B, 1, L, d)
    if spec.deltas == "paired":
        layer_ids, diffs = paired_differences(model, tokenizer, pairs, layers, batch_size)
        return ExampleDeltas(layer_ids, {int(top_ks[0]): (diffs[:, None], None)}, [])  # (B, 1, L, d)
    out: Deltas = {}
    attributions = None
    layer_ids: list[int] = []
    errors: list[float] = []
    effective, k_used = None, None
    example_errors: torch.Tensor | None = None
    for k in top_ks if spec.uses_k else top_ks[:1]:
        cfg = replace(spec.configure(config), top_k=int(k))
        ex = extract_deltas(model, tokenizer, pairs, layers, cfg, batch_size, attributions=attributions,
                            indices=indices)  # fmt: skip
        if spec.uses_attributions and attributions is None:
            attributions, errors = ex.attributions, ex.completeness_errors
            per_example = [a.completeness_error if a is not None else None for a in attributions]
            if config.attribution == "ig":
                example_errors = torch.tensor([float("nan") if e is None else e for e in per_example],
                                              dtype=torch.float64)  # fmt: skip
        layer_ids = ex.layers
        R = ex.deltas_pos.shape[0] // B
        if spec.uses_k and effective is None:
            effective = ex.effective_top_k
            k_used = torch.tensor(ex.k_used, dtype=torch.long).view(B, R) if ex.k_used else None
        out[int(k)] = (ex.deltas_pos.view(B, R, *ex.deltas_pos.shape[1:]),
                       ex.deltas_neg.view(B, R, *ex.deltas_neg.shape[1:]))  # fmt: skip
    return ExampleDeltas(layer_ids, out, errors, effective, k_used, example_errors)


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
    aggregate, mode = get_method(method).settings(aggregate, mode)
    pos = deltas_pos.flatten(0, 1) if deltas_pos.ndim == 4 else deltas_pos  # (N·R, L, d)
    neg = None if mode == "pos" else deltas_neg  # u⁺ only: paired methods have no δ⁻, all_tokens' equals δ⁺
    if neg is not None and neg.ndim == 4:
        neg = neg.flatten(0, 1)
    vec = build_steering_vector(pos, neg, layers, aggregate, mode, {"method": method, **(metadata or {})})
    if unit_norm:
        vec = SteeringVector({k: v / v.norm().clamp_min(1e-12) for k, v in vec.vectors.items()},
                             {**vec.metadata, "unit_norm": True})  # fmt: skip
    return vec


def fit_metadata(
    model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], method: str, config: GrainsConfig, **extra
) -> dict:
    """Provenance of a vector of ``method`` fit from ``pairs``: model, data, and the extraction settings it used;
    for text pairs also ``layer_norms``, the median hidden-state norm of every decoder layer over the pairs' prompts
    (``steering.layer_norms``), so the vector and every vector fit from its deltas can be steered with
    ``alpha_unit="layer_norm"``."""
    spec = get_method(method)
    settings = asdict(spec.configure(config)) if spec.deltas == "masked" else {}
    canonical = spec.deltas != "masked" or config.objective != "legacy_off_by_one"
    if pairs and all(p.pixel_values is None for p in pairs):  # image prompts need their pixels: no norms
        norms = median_layer_norms(model, tokenizer, [p.prompt for p in pairs], range(len(find_decoder_layers(model))))
        extra = {"layer_norms": {str(layer): value for layer, value in norms.items()}, **extra}
    return provenance(model, tokenizer, pairs, method=method, canonical=canonical, **settings, **extra)


def fit_vector(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    method: str = "grains",
    layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None,
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    unit_norm: bool = True,
    batch_size: int = 4,
) -> SteeringVector:
    """The steering vector of ``method`` (``steering.methods.METHODS``) from contrastive triples, at ``config.top_k``;
    the same vector ``SteeringModule`` writes for the same pairs and settings."""
    config = config or GrainsConfig()
    check_pairs(pairs)
    same = identical_pairs(pairs)
    if same:
        if len(same) == len(pairs):
            raise ValueError(f"all {len(pairs)} pairs have identical preferred and dispreferred answers: nothing to "
                             "contrast; pass pairs whose answers differ")  # fmt: skip
        warnings.warn(f"skipped {len(same)} of {len(pairs)} pairs (pairs {same}) whose preferred and dispreferred "
                      "answers are identical: their contrastive objective is 0, so they carry no steering signal",
                      stacklevel=2)  # fmt: skip
        pairs = [p for i, p in enumerate(pairs) if i not in set(same)]
    result = example_deltas(model, tokenizer, pairs, method, layers, config, [config.top_k], batch_size)
    errors = result.completeness_errors
    ig_error = sum(map(abs, errors)) / len(errors) if errors else None
    meta = fit_metadata(model, tokenizer, pairs, method, config, unit_norm=unit_norm,
                        ig_completeness_mean_abs_error=ig_error)  # fmt: skip
    if same:
        meta["n_identical_pairs_skipped"] = len(same)
    if result.effective_top_k is not None:
        meta["effective_top_k"] = result.effective_top_k
    pos, neg = result.deltas[config.top_k]
    kept_idx = [i for i in range(len(pairs) + len(same)) if i not in set(same)]  # indices into the caller's pairs
    kept, record = apply_gate(result.errors, config.max_completeness_error, kept_idx)
    if record is not None:
        meta["completeness_gate"] = record
        if record["n_dropped"]:
            warnings.warn(gate_warning(record), stacklevel=2)
        pos, neg = pos[kept], None if neg is None else neg[kept]
        if result.k_used is not None:  # the k of the rows the vector is built from
            meta["effective_top_k"] = effective_top_k(config.top_k, result.k_used[kept].flatten().tolist())
    return vector_from_deltas(method, pos, neg, result.layers, aggregate, mode, unit_norm, meta)


def fit_steering_vector(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None,
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    batch_size: int = 4,
    unit_norm: bool = True,
) -> SteeringVector:
    """GrAInS: fit per-layer steering vectors from contrastive triples (canonical defaults, docs/grains.md §6.5).

    ``config.selection`` picks the method (``attribution`` → ``grains``; ``random`` / ``all`` → the controls).
    """
    config = config or GrainsConfig()
    method = method_for_selection(config.selection).name
    return fit_vector(model, tokenizer, pairs, method, layers, config, aggregate, mode, unit_norm, batch_size)
