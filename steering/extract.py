"""GrAInS extraction: triples → IG → top-k P/Q → masked inputs → per-layer deltas (vectors: ``steering.fitting``).

Design decisions (vs the released code, docs/grains.md §2.10–§2.12):
- IG runs once per example and serves both masks (P = top-k positive, Q = top-k negative); the release ran the
  whole pipeline twice. Examples are processed in batches (``batch_size``), IG rows in ``internal_batch_size`` chunks;
  by default each IG row packs x once with y⁺ and y⁻ after it (``pack_ig``, docs/grains.md §2.10).
- Deltas δ⁺ = h(x) − h(x∖P), δ⁻ = h(x) − h(x∖Q) are read at the last *input* token (default; 3 short no-grad
  passes: x, x∖P, x∖Q) from hooks at the steering hook point; ``position="last"`` uses the last token of x ⊕ y±
  (2 rows per example, P/Q chosen per sequence, as in the release).
- Selection ``random`` / ``all`` skips IG: the "GrAInS without attribution" controls on the same interface.
- P and Q are sign-restricted (P ⊆ {a > 0}, Q ⊆ {a < 0}, so disjoint, possibly fewer than k): with plain top-k on a
  prompt shorter than 2k tokens, P and Q share most tokens, δ⁺ ≈ δ⁻ and v = u⁺ − u⁻ is noise. Never candidates by
  default: position 0 (the attention sink: BOS, or the first token when the tokenizer adds none; zeroing it removes
  the sink and gives outlier deltas ~10× the others) and the read position (the token at which δ is read: zeroing
  it makes δ the token's own identity, so u± becomes "was the final ':' in P or Q", not what the context adds).
  On SmolLM2-135M/TruthfulQA these three artefacts made the canonical vector move the margin the wrong way.
  ``signed_selection=False, exclude_first=False, exclude_read_position=False`` is plain top-k as in the release.
- ``attribution="occlusion"`` scores each candidate token by the drop in F when it alone is masked the way P and Q are
  (``steering.occlusion``), instead of IG; ``max_completeness_error`` drops IG examples whose completeness gap exceeds
  it from the vector (``steering.completeness_gate``; ``Extraction.kept``, ``to_vector``). Both off by default.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from lmcore.attention_backends import variable_length_attention
from lmcore.choices import check_choice
from lmcore.padding import PaddingSide, check_padding_side, chunks
from steering.activations import states_at
from steering.attribution import ContrastiveAttribution, EmbeddedTriple, IGMethod, contrastive_ig_embeds
from steering.completeness_gate import check_max_completeness_error, completeness_gate
from steering.layers import find_decoder_layers, model_hidden_size, resolve_layers
from steering.masking import (
    MaskMethod,
    check_mask_method,
    mask_positions,
    random_positions,
    replacement_embedding,
    top_k_positions,
)
from steering.occlusion import contrastive_occlusion_embeds
from steering.pairs import ContrastivePair, embed_inputs, encode_pair, image_token_mask, pairs_hash, tokenizer_hash
from steering.scoring import Objective, check_objective
from steering.vectors import Aggregate, Mode, build_steering_vector, package_version

Position = Literal["last_input", "last"]
Selection = Literal["attribution", "random", "all"]
Attribution = Literal["ig", "occlusion"]


@dataclass(frozen=True)
class GrainsConfig:
    """Extraction settings; defaults are docs/grains.md §6.5 (canonical).

    Attributes:
        top_k: k for text tokens (P and Q each). top_k_image: k for image tokens (VLMs).
        ig_steps / ig_method: IG interpolation steps and quadrature. internal_batch_size: rows per IG chunk.
        objective: ``sum`` | ``mean`` | ``last_token`` | ``legacy_off_by_one`` (released code, non-canonical).
        include_response: also attribute response tokens (candidates for ``position="last"``).
        exclude_special: drop the tokenizer's special tokens (BOS, template) from the candidates.
        exclude_token_ids: further ids that are never candidates (e.g. chat-template tokens).
        exclude_first: position 0 (the attention sink) is never a candidate.
        exclude_read_position: the token at which δ is read (last of x, or of x ⊕ y±) is never a candidate.
        signed_selection: P only from scores > 0 and Q only from scores < 0 (disjoint; may hold fewer than k).
        balanced_selection: P and Q hold the same number of text tokens, the smaller of the two picks (the
            strongest of the larger set are kept), so δ⁺ and δ⁻ mask equally many tokens, as top-k / bottom-k do
            without the sign restriction (measured on SmolLM2: not a stable direction either, docs/grains.md §6.11).
        mask: ``baseline`` (zero embedding) | ``pad_id`` | ``unk_id`` | ``mask_id`` | ``mean`` | ``attention``.
        position: ``last_input`` (last token of x) | ``last`` (last token of x ⊕ y±).
        selection: ``attribution`` | ``random`` (seeded random k) | ``all`` (every candidate).
        check_completeness: compute F(x), F(x') for the completeness diagnostic (one extra no-grad pass of 2 packed
            rows per example: ~3 % of the IG; 4 padded rows without packing).
        pack_ig: IG rows hold x once, then y⁺ and y⁻ (block-causal; ``steering.attribution``): the same scores from
            ``ig_steps`` rows per example instead of 2 · ``ig_steps``; padded rows where packing is not exact.
        padding_side: how rows of different lengths are batched. seed: for ``random``.
        attribution: ``ig`` (contrastive IG) | ``occlusion`` (F(x) − F(x with the token masked by ``mask``), one
            no-grad forward per candidate token; input tokens only, so no ``include_response``).
        max_completeness_error: IG only; examples whose |Σ a − (F(x) − F(x′))| exceeds it (or is not finite) are left
            out of the vector and counted in its metadata (``completeness_gate``); None (default) keeps every example.
            Needs ``check_completeness``.
    """

    top_k: int = 10
    top_k_image: int = 50
    ig_steps: int = 20
    ig_method: IGMethod = "gausslegendre"
    internal_batch_size: int = 20  # = ig_steps: one chunk per (example, response), no padding waste
    objective: Objective = "sum"
    include_response: bool = False
    exclude_special: bool = False
    exclude_token_ids: tuple[int, ...] = ()
    exclude_first: bool = True
    exclude_read_position: bool = True
    signed_selection: bool = True
    balanced_selection: bool = False
    mask: MaskMethod = "baseline"
    position: Position = "last_input"
    selection: Selection = "attribution"
    check_completeness: bool = True
    pack_ig: bool = True
    padding_side: PaddingSide = "left"
    seed: int = 0
    attribution: Attribution = "ig"
    max_completeness_error: float | None = None

    def __post_init__(self) -> None:
        for name in ("top_k", "top_k_image", "ig_steps", "internal_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be >= 1")
        check_choice("ig_method", self.ig_method, IGMethod)
        check_objective(self.objective)
        check_mask_method(self.mask)
        check_padding_side(self.padding_side)
        check_choice("position", self.position, Position)
        check_choice("selection", self.selection, Selection)
        check_choice("attribution", self.attribution, Attribution)
        check_max_completeness_error(self.max_completeness_error)
        if self.attribution == "occlusion" and self.include_response:
            raise ValueError("attribution 'occlusion' scores input tokens only; include_response must be False")
        if self.max_completeness_error is not None and self.attribution != "ig":
            raise ValueError(f"max_completeness_error {self.max_completeness_error} gates IG's completeness error; "
                             f"attribution {self.attribution!r} has none: use attribution 'ig' or leave it "
                             "None")  # fmt: skip
        if self.max_completeness_error is not None and not self.check_completeness:
            raise ValueError(f"max_completeness_error {self.max_completeness_error} needs check_completeness=True "
                             "(the gate reads F(x) and F(x′))")  # fmt: skip


@dataclass(frozen=True)
class Extraction:
    """Deltas and diagnostics of one extraction run.

    Attributes:
        layers: the L layer indices. deltas_pos / deltas_neg: (R, L, d) fp32, R = N (``last_input``) or 2N.
        attributions: per example, or None when ``selection`` is not ``attribution``.
        top_pos / top_neg: per delta row, the masked positions P and Q (indices into that row's sequence).
        effective_top_k: the text k actually used (``effective_top_k``): a k beyond a row's candidates is clamped.
    """

    layers: list[int]
    deltas_pos: torch.Tensor
    deltas_neg: torch.Tensor
    attributions: list[ContrastiveAttribution | None]
    top_pos: list[torch.Tensor]
    top_neg: list[torch.Tensor]
    config: GrainsConfig
    effective_top_k: dict[str, Any] | None = None
    k_used: list[int] = field(default_factory=list)  # per delta row, the text k used (empty for selection "all")

    @property
    def completeness_errors(self) -> list[float]:
        return [a.completeness_error for a in self.attributions if a is not None and a.completeness_error is not None]

    @property
    def kept(self) -> torch.Tensor:
        """(N,) bool per example: passed the completeness gate (all True without ``max_completeness_error``)."""
        n = len(self.attributions)
        if self.config.max_completeness_error is None or any(a is None for a in self.attributions):
            return torch.ones(n, dtype=torch.bool)
        errors = [float("nan") if a.completeness_error is None else a.completeness_error for a in self.attributions]
        return completeness_gate(errors, self.config.max_completeness_error)

    def to_vector(self, aggregate: Aggregate = "pca", mode: Mode = "both", metadata: dict | None = None):
        """The vector from the deltas of the examples that passed the completeness gate (all without one)."""
        rows = self.kept.repeat_interleave(len(self.deltas_pos) // len(self.attributions))  # per delta row
        return build_steering_vector(self.deltas_pos[rows], self.deltas_neg[rows], self.layers, aggregate, mode,
                                     metadata)  # fmt: skip


def candidate_masks(tokenizer, model, ids: torch.Tensor, config: GrainsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(text, image) candidate masks (n,) over the input tokens."""
    image = image_token_mask(model, ids.cpu())
    keep = torch.ones_like(ids, dtype=torch.bool).cpu()
    excluded = set(config.exclude_token_ids)
    if config.exclude_special:
        excluded |= set(tokenizer.all_special_ids)
    for token in excluded:
        keep &= (ids.cpu() != token) | image
    if config.exclude_first:
        keep[0] = False
    if config.exclude_read_position and config.position == "last_input":
        keep[-1] = False
    return keep & ~image, keep & image


def select_positions(
    scores, text, image, config: GrainsConfig, generator
) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """P and Q (indices) from scores (n,) or by the control selections, with per-modality k; and the text k actually
    used (the smaller of P's and Q's text picks; None for ``selection="all"``, where k does not apply)."""
    out, used = [], []
    for sign in ("pos", "neg"):
        picked = []
        for modality, cand, k in (("text", text, config.top_k), ("image", image, config.top_k_image)):
            if not cand.any():
                continue
            if config.selection == "all":
                chosen = torch.nonzero(cand)[:, 0]
            elif config.selection == "random":
                chosen = random_positions(cand, k, generator)
            else:
                if config.signed_selection:
                    cand = cand & ((scores > 0) if sign == "pos" else (scores < 0)).to(cand.device)
                chosen = top_k_positions(scores, k, sign, cand) if cand.any() else torch.zeros(0, dtype=torch.long)
            picked.append((modality, chosen))
            if modality == "text":
                used.append(len(chosen))
        out.append(picked)
    k_used = None if config.selection == "all" else min(used, default=0)
    if config.balanced_selection and config.selection == "attribution" and k_used is not None:
        out = [[(m, c[:k_used] if m == "text" else c) for m, c in picked] for picked in out]
    p, q = (torch.cat([c for _, c in picked]) if picked else torch.zeros(0, dtype=torch.long) for picked in out)
    return p, q, k_used


def effective_top_k(requested: int, used: Sequence[int]) -> dict[str, Any]:
    """``{"requested", "min", "mean", "rows_below"}`` of the text k actually used per delta row."""
    if not used:
        return {"requested": requested, "min": None, "mean": None, "rows_below": 0}
    return {"requested": requested, "min": int(min(used)), "mean": round(sum(used) / len(used), 4),
            "rows_below": sum(u < requested for u in used)}  # fmt: skip


@variable_length_attention()
def extract_deltas(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[ContrastivePair],
    layers: Sequence[int] | None = None,
    config: GrainsConfig | None = None,
    batch_size: int = 4,
    attributions: Sequence[ContrastiveAttribution | None] | None = None,
    indices: Sequence[int] | None = None,
) -> Extraction:
    """Run attribution, selection and masking for ``pairs`` and return per-layer deltas (see module docstring).

    ``attributions`` (one per pair, from an earlier ``Extraction``) skips IG: a k sweep re-uses one attribution pass.
    ``indices`` (one per pair; default ``0 … N-1``) are the pairs' dataset indices: ``selection="random"`` seeds each
    pair's draw with ``config.seed + index``, so the draw does not depend on batching or on the number of ranks.
    """
    config = config or GrainsConfig()
    if len(pairs) == 0:
        raise ValueError("pairs is empty; GrAInS needs at least one (prompt, preferred, dispreferred) triple")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    if attributions is not None and len(attributions) != len(pairs):
        raise ValueError(f"{len(attributions)} attributions for {len(pairs)} pairs")
    indices = list(range(len(pairs))) if indices is None else [int(i) for i in indices]
    if len(indices) != len(pairs):
        raise ValueError(f"{len(indices)} indices for {len(pairs)} pairs")
    layer_ids = resolve_layers(model, layers)
    replacement = replacement_embedding(model, tokenizer, config.mask)
    emb = model.get_input_embeddings()
    d_pos, d_neg, attrs, tops_p, tops_q, used = [], [], [], [], [], []
    for idx in chunks(len(pairs), batch_size):
        enc = [encode_pair(tokenizer, pairs[i]) for i in idx]
        xs = [embed_inputs(model, e[0], pairs[i].pixel_values, **pairs[i].image_kwargs) for e, i in zip(enc, idx)]
        triples = [EmbeddedTriple(x, e[1], e[2]) for x, e in zip(xs, enc)]
        cands = [candidate_masks(tokenizer, model, e[0], config) for e in enc]  # (text, image) masks per example
        batch_attrs: list[ContrastiveAttribution | None] = [None] * len(idx)
        if attributions is not None and config.selection == "attribution":
            batch_attrs = [attributions[i] for i in idx]
        elif config.selection == "attribution" and config.attribution == "occlusion":
            batch_attrs = list(contrastive_occlusion_embeds(
                model, triples, [torch.nonzero(t | i)[:, 0] for t, i in cands], config.mask, replacement,
                config.objective, config.internal_batch_size, config.padding_side, packed=config.pack_ig,
            ))  # fmt: skip
        elif config.selection == "attribution":
            batch_attrs = list(contrastive_ig_embeds(
                model, triples, n_steps=config.ig_steps, method=config.ig_method, objective=config.objective,
                include_response=config.include_response, internal_batch_size=config.internal_batch_size,
                padding_side=config.padding_side, check_completeness=config.check_completeness, packed=config.pack_ig,
            ))  # fmt: skip
        rows, n_rows = [], 0
        for j, i in enumerate(idx):
            text, image = cands[j]
            generator = torch.Generator().manual_seed(config.seed + indices[i])
            a = batch_attrs[j]
            if config.position == "last_input":
                seqs = [(xs[j], a.scores if a is not None else None, text, image)]
            else:
                seqs = []
                for y, ys in ((enc[j][1], a and a.preferred_scores), (enc[j][2], a and a.dispreferred_scores)):
                    seq = torch.cat([xs[j], emb(y.to(emb.weight.device)).detach()])
                    m = len(y)
                    resp = torch.full((m,), config.include_response)
                    if config.exclude_read_position:
                        resp[-1] = False  # the read position (last token of x ⊕ y±)
                    scores = None if a is None else torch.cat([a.scores, ys if ys is not None else torch.zeros(m)])
                    seqs.append((seq, scores, torch.cat([text, resp]), torch.cat([image, torch.zeros(m, dtype=bool)])))
            for seq, scores, txt, img in seqs:
                p, q, k_used = select_positions(scores, txt, img, config, generator)
                if k_used is not None:
                    used.append(k_used)
                tops_p.append(p)
                tops_q.append(q)
                clean = (seq, torch.ones(len(seq), dtype=torch.long))
                rows += [clean, mask_positions(seq, p, config.mask, replacement),
                         mask_positions(seq, q, config.mask, replacement)]  # fmt: skip
                n_rows += 1
        h = states_at(model, [r[0] for r in rows], [-1] * len(rows), layer_ids,
                      attention_masks=[r[1] for r in rows], padding_side=config.padding_side,
                      batch_size=config.internal_batch_size).view(n_rows, 3, len(layer_ids), -1)  # fmt: skip
        d_pos.append(h[:, 0] - h[:, 1])  # (rows, L, d)
        d_neg.append(h[:, 0] - h[:, 2])
        attrs += batch_attrs
    effective = effective_top_k(config.top_k, used)
    if effective["rows_below"]:
        warnings.warn(f"top_k {config.top_k}: {effective['rows_below']} of {len(used)} delta rows had fewer candidate "
                      f"tokens (k used: min {effective['min']}, mean {effective['mean']}); the masks hold what was "
                      "available and the vector's metadata records the effective k", stacklevel=2)  # fmt: skip
    return Extraction(layer_ids, torch.cat(d_pos), torch.cat(d_neg), attrs, tops_p, tops_q, config, effective, used)


def provenance(model: nn.Module, tokenizer, pairs: Sequence[ContrastivePair], **extra) -> dict:
    """Metadata stored with a vector: model, tokenizer, data, hook point, dtype, package version, date."""
    config = getattr(model, "config", None)
    layer_cls = type(find_decoder_layers(model)[0]).__name__
    return {
        "model_id": getattr(config, "_name_or_path", "") or type(model).__name__,
        "model_class": type(model).__name__,
        "revision": getattr(config, "_commit_hash", None),
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "hook_point": f"{layer_cls} output (decoder-layer output, pre-final-norm); capture and steering alike",
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "hidden_size": model_hidden_size(model),
        "num_layers": len(find_decoder_layers(model)),
        "data_hash": pairs_hash(pairs),
        "n_pairs": len(pairs),
        "package_version": package_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
