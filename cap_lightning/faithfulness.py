"""Faithfulness (ERASER comprehensiveness / sufficiency, hard and soft) and attribution–prior agreement metrics.

Definitions (docs/cap.md §3.4, §6 "Evaluation"):
- ``comp@k = p(ŷ|x) − p(ŷ|x∖r_k)`` and ``suff@k = p(ŷ|x) − p(ŷ|r_k)``, where ``ŷ`` is the model's prediction on the
  full input and ``r_k`` the top-k% content tokens by the given scores (the model's own IG of ``ŷ`` at test time).
  Higher comp and lower suff are better. ``*_aopc`` is the mean over the bins (ERASER bins 1/5/10/20/50%).
  Raw differences, not clipped at 0 and not normalised by a null-input baseline.
- Soft variants (Zhao & Aletras 2023): no tokens are removed; every element of a content token's word embedding
  is kept by an independent Bernoulli draw with keep-probability ``1 − q`` (soft-comp) or ``q`` (soft-suff), ``q``
  the token's normalised importance. Kept elements are not rescaled, so importances of exactly 0/1 zero or keep
  whole tokens. Draws come from a ``torch.Generator`` on the CPU (then moved), so results are identical across
  devices for a given seed.

Design decisions:
- Units (``level``): ``word`` (CapModule's default) or ``subword``. Subword units are the *content tokens*:
  ``word_index >= 0`` and attended (``tokens.content_mask``). At word level a word's score is the sum of its
  content tokens' scores (``tokens.word_sums``), the bins select top-k % of the *words* the model reads, and a
  selected word is removed or kept with all its subwords; with one subword per word both levels agree. Special tokens
  ([CLS], [SEP], BOS…) are never selected, removed or perturbed; padding is ignored.
- Normalised comp/suff: each row's comp and suff divided by its own p(ŷ|x) (they are bounded by it), reported
  beside the raw values with the mean p(ŷ|x) (``p_pred``), so confidence and faithfulness can be told apart.
- ``k = ceil(fraction · n_content)`` (a 1e-6 tolerance absorbs float error, so 0.3 · 10 selects 3, not 4), hence at
  least one token whenever a row has content and ``fraction > 0``; ``fraction`` must lie in (0, 1].
- Selection ranks by the *signed* score (the tokens that most support ``ŷ``); pass ``scores.abs()`` for magnitude.
  Ties are broken by position, earlier first (stable sort), so selection is deterministic.
- Removal deletes tokens and left-packs the rest (ERASER style): kept tokens keep their order, move to the front,
  and are followed by right padding (``pad_token_id``, attention 0) whatever the input's padding side, so position
  ids restart as for a genuinely shorter text. The width is trimmed to the longest kept row. A row left with no
  token at all (a tokenizer without special tokens, everything removed) becomes one *attended* pad token, so the
  model still has an input to classify.
- One forward per bin for the whole batch: the comp and suff inputs of a bin are packed to a common width and run
  as one ``2B`` batch. The soft variants run as one ``2·samples·B`` forward.
- Soft importance: min–max normalised per row over content tokens (or words, at word level: each word's value
  goes to all its subwords; signed scores map monotonically to [0, 1]); a constant row (including a single unit)
  carries no ranking and gets 0.5 everywhere.
- Agreement primitives: Spearman with average ranks for ties (``cap_lightning.ranks``), over the masked entries
  only; a row with fewer than two entries or a constant side has no defined correlation and gets ``constant`` (0.0
  by default: no NaN reaches a metric). Top-k IoU uses the same top-k selection as the erasure metrics, on both
  sides; a row without entries gets 0.0. ``cap_lightning.agreement`` applies them to the model's IG and a prior.
  ``faithfulness_step`` skips rows without content tokens for every metric.
- Metric states are sums and counts (``dist_reduce_fx="sum"``), so DDP sync gives the exact global mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from cap_lightning.attribution import ForwardFn, classifier_forward
from cap_lightning.tokens import content_mask, word_sums
from lmcore.choices import check_choice
from lmcore.ranks import average_ranks

Level = Literal["word", "subword"]  # the unit the rationale is ranked and removed by
DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
BatchForward = Callable[[dict[str, Tensor]], Tensor]  # {input_ids, attention_mask[, token_type_ids]} -> logits (B, C)
_ROUNDING_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------- validation
def _check_fraction(fraction: float, name: str = "fraction") -> float:
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be in (0, 1], got {fraction}")
    return fraction


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    out = tuple(_check_fraction(f, "every fraction") for f in fractions)
    if not out:
        raise ValueError("fractions must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"fractions must be distinct, got {out}")
    return out


def _check_scores(scores: Tensor, reference: Tensor, content: Tensor, name: str = "scores") -> None:
    if scores.shape != reference.shape:
        raise ValueError(f"{name} has shape {tuple(scores.shape)}, expected {tuple(reference.shape)} (B, T)")
    if torch.isnan(scores[content]).any():
        raise ValueError(f"{name} contain NaN at content tokens")


# ------------------------------------------------------------------------------------------- selection
def num_selected(n_content: Tensor, fraction: float) -> Tensor:
    """``ceil(fraction · n)`` per row, at least 1 where ``n > 0``, never more than ``n``. (B,) long."""
    fraction = _check_fraction(fraction)
    k = torch.ceil(n_content.to(torch.float64) * fraction - _ROUNDING_TOLERANCE).long()
    return torch.minimum(k.clamp_min(1), n_content.long())


def top_k_mask(scores: Tensor, content: Tensor, fraction: float) -> Tensor:
    """(B, T) bool: the top ``ceil(fraction · n_content)`` content tokens of each row by score.

    Ties are broken by position (earlier first). Non-content tokens are never selected, whatever their score.
    """
    _check_scores(scores, content, content)
    k = num_selected(content.sum(-1), fraction)  # (B,)
    key = scores.detach().float().masked_fill(~content, 0.0)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices  # (B, T) by score, ties by position
    first = torch.sort((~content.gather(-1, order)).to(torch.uint8), dim=-1, stable=True).indices
    order = order.gather(-1, first)  # content tokens first, each group still by score then position
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    return (rank < k.unsqueeze(-1)) & content


def rationale_mask(
    scores: Tensor, content: Tensor, fraction: float, *, level: Level = "subword", word_index: Tensor | None = None
) -> Tensor:
    """(B, T) bool: the content tokens of the top-k % rationale at ``level``.

    ``subword``: :func:`top_k_mask` of the tokens. ``word``: :func:`top_k_mask` of the words by their summed token
    scores (ties to the earlier word), then every content token of a chosen word; needs ``word_index``.
    """
    check_choice("level", level, Level)
    if level == "subword":
        return top_k_mask(scores, content, fraction)
    if word_index is None:
        raise ValueError("level 'word' needs word_index (B, T)")
    _check_scores(scores, content, content)
    words, present = word_sums(scores, word_index, content)
    chosen = top_k_mask(words, present, fraction)  # (B, W)
    slots = torch.where(content, word_index, torch.zeros_like(word_index)).to(chosen.device)
    return chosen.gather(-1, slots) & content.to(chosen.device)


def token_importance(
    scores: Tensor, content: Tensor, *, level: Level = "subword", word_index: Tensor | None = None
) -> Tensor:
    """Soft-metric importance in [0, 1] per token, (B, T): :func:`normalise_importance` over the tokens, or at word
    level over the words (summed scores), each word's value given to all of its subwords."""
    check_choice("level", level, Level)
    if level == "subword":
        return normalise_importance(scores, content)
    if word_index is None:
        raise ValueError("level 'word' needs word_index (B, T)")
    words, present = word_sums(scores, word_index, content)
    q = normalise_importance(words, present)
    slots = torch.where(content, word_index, torch.zeros_like(word_index)).to(q.device)
    return q.gather(-1, slots) * content.to(q.device)


# ------------------------------------------------------------------------------------------- packing
def left_pack(
    keep: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    token_type_ids: Tensor | None = None,
    pad_token_id: int = 0,
    width: int | None = None,
) -> dict[str, Tensor]:
    """Delete the tokens where ``keep`` is False and move the rest to the front, in order; right-pad.

    Args:
        keep: ``(B, T)`` bool; unattended positions are dropped whatever it says.
        input_ids, attention_mask, token_type_ids: ``(B, T)`` model inputs.
        pad_token_id: id written into the freed positions (attention 0).
        width: output length (at least the longest kept row); None trims to the longest kept row.

    Returns ``input_ids``, ``attention_mask`` (and ``token_type_ids``) of shape ``(B, width)``. A row that keeps
    nothing becomes one attended pad token.
    """
    keep = keep & (attention_mask > 0)
    counts = keep.sum(-1)  # (B,)
    need = max(int(counts.max()) if counts.numel() else 0, 1)
    width = need if width is None else width
    if width < need:
        raise ValueError(f"width {width} is shorter than the longest kept row ({need} tokens)")
    order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices  # kept positions first, in order
    if width > order.shape[-1]:
        order = torch.cat([order, order[:, :1].expand(-1, width - order.shape[-1])], dim=-1)
    order = order[:, :width]  # (B, W)
    valid = torch.arange(width, device=keep.device).unsqueeze(0) < counts.unsqueeze(-1)  # (B, W)
    out = {
        "input_ids": torch.where(valid, input_ids.gather(-1, order), torch.full_like(order, pad_token_id)),
        "attention_mask": valid.to(attention_mask.dtype),
    }
    out["attention_mask"][counts == 0, 0] = 1  # an empty text: one attended pad token
    if token_type_ids is not None:
        out["token_type_ids"] = torch.where(valid, token_type_ids.gather(-1, order), torch.zeros_like(order))
    return out


def erasure_keep_masks(
    scores: Tensor,
    content: Tensor,
    attention_mask: Tensor,
    fraction: float,
    *,
    level: Level = "subword",
    word_index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Keep masks (B, T) of the comprehensiveness input (rationale removed) and the sufficiency input (only the
    rationale and the special tokens kept); the rationale at ``level`` (:func:`rationale_mask`)."""
    rationale = rationale_mask(scores, content, fraction, level=level, word_index=word_index)
    attended = attention_mask > 0
    return attended & ~rationale, attended & (~content | rationale)


def erasure_inputs(
    input_ids: Tensor,
    attention_mask: Tensor,
    content: Tensor,
    scores: Tensor,
    fraction: float,
    pad_token_id: int = 0,
    token_type_ids: Tensor | None = None,
    *,
    level: Level = "subword",
    word_index: Tensor | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The left-packed comprehensiveness input ``x∖r_k`` and sufficiency input ``r_k`` (special tokens kept)."""
    comp_keep, suff_keep = erasure_keep_masks(
        scores, content, attention_mask, fraction, level=level, word_index=word_index
    )
    comp = left_pack(comp_keep, input_ids, attention_mask, token_type_ids, pad_token_id)
    suff = left_pack(suff_keep, input_ids, attention_mask, token_type_ids, pad_token_id)
    return comp, suff


# ------------------------------------------------------------------------------------------- hard metrics
class ErasureScores(NamedTuple):
    comp: Tensor  # (B, K) p(ŷ|x) − p(ŷ|x∖r_k) per fraction
    suff: Tensor  # (B, K) p(ŷ|x) − p(ŷ|r_k) per fraction
    pred: Tensor  # (B,) ŷ on the full input
    prob: Tensor  # (B,) p(ŷ|x)


def _pred_prob(logits: Tensor) -> tuple[Tensor, Tensor]:
    probs = logits.detach().float().softmax(-1)
    pred = probs.argmax(-1)
    return pred, probs.gather(-1, pred.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def erasure_scores(
    forward_fn: BatchForward,
    batch: Mapping[str, Tensor],
    scores: Tensor,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    pad_token_id: int = 0,
    logits: Tensor | None = None,
    level: Level = "subword",
) -> ErasureScores:
    """Hard comprehensiveness and sufficiency per example and bin; one forward of ``2B`` rows per bin.

    Args:
        forward_fn: model inputs dict -> logits (B', C), e.g. ``CapModule`` itself.
        batch: ``input_ids``, ``attention_mask``, ``word_index`` (and ``token_type_ids``), each (B, T).
        scores: (B, T) token scores that rank the rationale.
        fractions: the bins, each in (0, 1].
        pad_token_id: the model's pad id (decoder classifiers find their last token through it).
        logits: the full-input logits when already computed (saves one forward).
        level: ``word`` or ``subword`` units (:func:`rationale_mask`).
    """
    fractions = _check_fractions(fractions)
    check_choice("level", level, Level)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    types = batch.get("token_type_ids")
    content = content_mask(batch)
    _check_scores(scores, ids, content)
    if logits is None:
        logits = forward_fn(_model_inputs(batch))
    pred, prob = _pred_prob(logits)
    B = ids.shape[0]
    comp, suff = [], []
    for fraction in fractions:
        comp_keep, suff_keep = erasure_keep_masks(
            scores, content, mask, fraction, level=level, word_index=batch["word_index"]
        )
        keep = torch.cat([comp_keep, suff_keep])  # (2B, T)
        two = (ids.repeat(2, 1), mask.repeat(2, 1), None if types is None else types.repeat(2, 1))
        packed = left_pack(keep, *two, pad_token_id=pad_token_id)
        probs = forward_fn(packed).detach().float().softmax(-1)  # (2B, C)
        p = probs.gather(-1, pred.repeat(2).unsqueeze(-1)).squeeze(-1)
        comp.append(prob - p[:B])
        suff.append(prob - p[B:])
    return ErasureScores(torch.stack(comp, -1), torch.stack(suff, -1), pred, prob)


def _model_inputs(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


# ------------------------------------------------------------------------------------------- soft metrics
class SoftErasureScores(NamedTuple):
    comp: Tensor  # (B,) p(ŷ|x) − mean_s p(ŷ|x ⊙ m_s), m ~ Bernoulli(1 − q)
    suff: Tensor  # (B,) p(ŷ|x) − mean_s p(ŷ|x ⊙ m_s), m ~ Bernoulli(q)
    pred: Tensor  # (B,)
    prob: Tensor  # (B,)


def normalise_importance(scores: Tensor, content: Tensor) -> Tensor:
    """Per-row min–max of the content-token scores to [0, 1]; 0.5 on constant rows; 0 off content. (B, T)."""
    _check_scores(scores, content, content)
    s = scores.detach().float()
    lo = s.masked_fill(~content, math.inf).amin(-1, keepdim=True)
    hi = s.masked_fill(~content, -math.inf).amax(-1, keepdim=True)
    span = hi - lo
    varies = torch.isfinite(span) & (span > 0)
    q = torch.where(varies, (s - lo) / torch.where(varies, span, torch.ones_like(span)), torch.full_like(s, 0.5))
    return (q * content).clamp(0.0, 1.0)


@torch.no_grad()
def soft_erasure_scores(
    embeds_forward: ForwardFn,
    embeds: Tensor,
    content: Tensor,
    importance: Tensor,
    *,
    logits: Tensor | None = None,
    generator: torch.Generator | int | None = None,
    samples: int = 1,
) -> SoftErasureScores:
    """Soft comprehensiveness / sufficiency (Zhao & Aletras 2023) from element-wise Bernoulli embedding masks.

    Args:
        embeds_forward: ``inputs_embeds (r·B, T, d) -> logits (r·B, C)`` for the batch repeated ``r`` times along
            dim 0 (``cap_lightning.attribution.classifier_forward`` is one; see :func:`classifier_embeds`).
        embeds: (B, T, d) word embeddings of the input.
        content: (B, T) bool content tokens; all other positions are never perturbed.
        importance: (B, T) in [0, 1] on content tokens (e.g. :func:`normalise_importance`).
        logits: full-input logits when already computed.
        generator: a CPU ``torch.Generator`` or an int seed (None: seed 0), for reproducible masks.
        samples: Bernoulli masks per example (averaged); one ``2·samples·B`` forward.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    B, T, d = embeds.shape
    _check_scores(importance, content, content, "importance")
    q = importance.detach().float()
    if ((q[content] < 0) | (q[content] > 1)).any():
        raise ValueError("importance must lie in [0, 1] at content tokens; use normalise_importance")
    if generator is None or isinstance(generator, int):
        generator = torch.Generator().manual_seed(0 if generator is None else generator)
    q = q.cpu()
    fixed = ~content.cpu()
    keep_comp = torch.where(fixed, 1.0, 1.0 - q)  # (B, T)
    keep_suff = torch.where(fixed, 1.0, q)
    keep_prob = torch.stack([keep_comp, keep_suff]).view(2, 1, B, T, 1)
    draws = torch.rand((2, samples, B, T, d), generator=generator)
    masks = (draws < keep_prob).to(device=embeds.device, dtype=embeds.dtype)  # (2, S, B, T, d)
    perturbed = (embeds.detach().unsqueeze(0).unsqueeze(0) * masks).flatten(0, 2)  # (2·S·B, T, d)
    if logits is None:
        logits = embeds_forward(embeds.detach())
    pred, prob = _pred_prob(logits)
    probs = embeds_forward(perturbed).detach().float().softmax(-1)  # (2·S·B, C)
    p = probs.gather(-1, pred.repeat(2 * samples).unsqueeze(-1)).view(2, samples, B).mean(1)
    return SoftErasureScores(prob - p[0], prob - p[1], pred, prob)


def classifier_embeds(model, batch: Mapping[str, Tensor]) -> tuple[ForwardFn, Tensor]:
    """The ``embeds_forward`` and word embeddings (B, T, d) of an HF classifier on ``batch``, for the soft metrics.

    Uses :func:`cap_lightning.attribution.classifier_forward` (the word-embedding output is swapped in by a hook,
    so position / type embeddings are added as usual, exactly as in the IG attribution).
    """
    with torch.no_grad():
        embeds = model.get_input_embeddings()(batch["input_ids"])
    return classifier_forward(model, batch["input_ids"], batch["attention_mask"]), embeds


# ------------------------------------------------------------------------------------------- agreement
def spearman_rows(a: Tensor, b: Tensor, mask: Tensor, constant: float = 0.0) -> Tensor:
    """Spearman correlation of ``a`` and ``b`` per row over ``mask`` (B,), average ranks for ties.

    Rows with fewer than two masked entries, or where either side is constant, get ``constant``.
    """
    _check_scores(a, mask, mask, "a")
    _check_scores(b, mask, mask, "b")
    dtype = torch.float32 if a.device.type == "mps" else torch.float64
    a, b, m = a.detach().to(dtype), b.detach().to(dtype), mask.to(dtype)
    n = m.sum(-1)
    ra, rb = average_ranks(a, mask), average_ranks(b, mask)
    mean = (n + 1.0) / 2.0  # the mean of average ranks 1..n
    ca, cb = (ra - mean.unsqueeze(-1)) * m, (rb - mean.unsqueeze(-1)) * m
    denom = (ca.square().sum(-1) * cb.square().sum(-1)).sqrt()
    ok = (n >= 2) & (denom > 1e-12)
    rho = (ca * cb).sum(-1) / torch.where(ok, denom, torch.ones_like(denom))
    return torch.where(ok, rho, torch.full_like(rho, constant)).float()


def topk_iou(a: Tensor, b: Tensor, mask: Tensor, fraction: float = 0.2) -> Tensor:
    """|top_k(a) ∩ top_k(b)| / |top_k(a) ∪ top_k(b)| per row over ``mask`` (B,); 0 for rows without entries."""
    ta, tb = top_k_mask(a, mask, fraction), top_k_mask(b, mask, fraction)
    inter = (ta & tb).sum(-1).float()
    union = (ta | tb).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(union))


# ------------------------------------------------------------------------------------------- torchmetrics
def _bin_name(fraction: float) -> str:
    return f"{100 * fraction:g}"


class FaithfulnessMetrics(Metric):
    """Running means of comp@k, suff@k, their AOPC, soft comp/suff and prior agreement; DDP-safe sums.

    ``compute()`` returns a dict with ``comp@1 … comp@50``, ``suff@…``, ``comp_aopc``, ``suff_aopc``, ``soft_comp``,
    ``soft_suff``, ``prior_spearman``, ``prior_topk_iou``; with ``prob`` (p(ŷ|x) per row) also ``p_pred`` (its
    mean) and the normalised ``comp_norm@…``, ``suff_norm@…``, ``comp_norm_aopc``, ``suff_norm_aopc`` (each row's
    comp / suff divided by its p(ŷ|x), then averaged); a group that never received values is left out.

    Args:
        fractions: erasure bins in (0, 1] (names are percentages: ``comp@5`` for 0.05).
        topk_fraction: k of the prior top-k IoU.
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    def __init__(self, fractions: Sequence[float] = DEFAULT_FRACTIONS, topk_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fractions = _check_fractions(fractions)
        self.topk_fraction = _check_fraction(topk_fraction, "topk_fraction")
        K = len(self.fractions)
        for name in ("comp_sum", "suff_sum", "comp_norm_sum", "suff_norm_sum"):
            self.add_state(name, torch.zeros(K), dist_reduce_fx="sum")
        for name in ("soft_comp_sum", "soft_suff_sum", "spearman_sum", "iou_sum", "prob_sum"):
            self.add_state(name, torch.zeros(()), dist_reduce_fx="sum")
        for name in ("n_erasure", "n_soft", "n_prior", "n_prob"):
            self.add_state(name, torch.zeros(()), dist_reduce_fx="sum")

    def update(
        self,
        comp: Tensor | None = None,
        suff: Tensor | None = None,
        soft_comp: Tensor | None = None,
        soft_suff: Tensor | None = None,
        spearman: Tensor | None = None,
        topk_iou: Tensor | None = None,
        prob: Tensor | None = None,
    ) -> None:
        """Add per-example values: ``comp``/``suff`` (B, K) together (with ``prob`` = p(ŷ|x) (B,) for the
        normalised values), ``soft_*`` (B,) together, agreement (B,)."""
        K = len(self.fractions)
        if (comp is None) != (suff is None):
            raise ValueError("comp and suff must be given together")
        if comp is not None:
            if comp.ndim != 2 or comp.shape[-1] != K or suff.shape != comp.shape:
                raise ValueError(f"comp/suff must be (B, {K}), got {tuple(comp.shape)} and {tuple(suff.shape)}")
            self.comp_sum += comp.detach().float().sum(0)
            self.suff_sum += suff.detach().float().sum(0)
            self.n_erasure += comp.shape[0]
        if prob is not None:
            if comp is None or prob.shape != comp.shape[:1]:
                raise ValueError(f"prob must come with comp/suff and be (B,), got {tuple(prob.shape)}")
            p = prob.detach().float().unsqueeze(-1)
            self.comp_norm_sum += (comp.detach().float() / p).sum(0)
            self.suff_norm_sum += (suff.detach().float() / p).sum(0)
            self.prob_sum += p.sum()
            self.n_prob += prob.shape[0]
        if (soft_comp is None) != (soft_suff is None):
            raise ValueError("soft_comp and soft_suff must be given together")
        if soft_comp is not None:
            self.soft_comp_sum += soft_comp.detach().float().sum()
            self.soft_suff_sum += soft_suff.detach().float().sum()
            self.n_soft += soft_comp.numel()
        if (spearman is None) != (topk_iou is None):
            raise ValueError("spearman and topk_iou must be given together")
        if spearman is not None:
            self.spearman_sum += spearman.detach().float().sum()
            self.iou_sum += topk_iou.detach().float().sum()
            self.n_prior += spearman.numel()

    def compute(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.n_erasure > 0:
            comp, suff = self.comp_sum / self.n_erasure, self.suff_sum / self.n_erasure
            for i, fraction in enumerate(self.fractions):
                out[f"comp@{_bin_name(fraction)}"] = comp[i]
                out[f"suff@{_bin_name(fraction)}"] = suff[i]
            out["comp_aopc"], out["suff_aopc"] = comp.mean(), suff.mean()
        if self.n_prob > 0:
            out["p_pred"] = self.prob_sum / self.n_prob
            comp, suff = self.comp_norm_sum / self.n_prob, self.suff_norm_sum / self.n_prob
            for i, fraction in enumerate(self.fractions):
                out[f"comp_norm@{_bin_name(fraction)}"] = comp[i]
                out[f"suff_norm@{_bin_name(fraction)}"] = suff[i]
            out["comp_norm_aopc"], out["suff_norm_aopc"] = comp.mean(), suff.mean()
        if self.n_soft > 0:
            out["soft_comp"], out["soft_suff"] = self.soft_comp_sum / self.n_soft, self.soft_suff_sum / self.n_soft
        if self.n_prior > 0:
            out["prior_spearman"], out["prior_topk_iou"] = self.spearman_sum / self.n_prior, self.iou_sum / self.n_prior
        return out


# ------------------------------------------------------------------------------------------- module helpers
def rationale_scores(
    attribute: Callable[[dict[str, Tensor]], Tensor], batch: Mapping[str, Tensor], labels: Tensor
) -> Tensor:
    """Run a gradient attribution for ``labels`` (e.g. the predictions) inside a test loop; detached (B, T).

    Lightning evaluates under ``torch.inference_mode``, whose tensors cannot be saved for backward: the batch is
    cloned with inference mode off and gradients on, then handed to ``attribute`` with ``labels`` swapped in.
    """
    with torch.inference_mode(False), torch.enable_grad():
        clean = {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}
        clean["labels"] = labels.clone()
        return attribute(clean).detach()


def faithfulness_step(
    forward_fn: BatchForward,
    batch: Mapping[str, Tensor],
    token_scores: Tensor,
    metrics: FaithfulnessMetrics,
    *,
    pad_token_id: int = 0,
    logits: Tensor | None = None,
    embeds_forward: ForwardFn | None = None,
    embeds: Tensor | None = None,
    generator: torch.Generator | int | None = None,
    soft_samples: int = 1,
    level: Level = "subword",
) -> dict[str, Tensor]:
    """Score one batch and update ``metrics``; returns the per-example values (rows without content removed).

    Hard comp/suff with p(ŷ|x) (``prob``, for the normalised values) always; soft comp/suff when ``embeds_forward``
    and ``embeds`` are given; ``level`` picks word or subword units. Agreement with a prior is
    ``cap_lightning.agreement``'s.
    """
    if (embeds_forward is None) != (embeds is None):
        raise ValueError("embeds_forward and embeds must be given together (or neither, to skip soft metrics)")
    content = content_mask(batch)
    rows = content.any(-1)  # (B,) rows with at least one content token
    hard = erasure_scores(
        forward_fn, batch, token_scores, metrics.fractions, pad_token_id=pad_token_id, logits=logits, level=level
    )
    out = {"comp": hard.comp[rows], "suff": hard.suff[rows], "prob": hard.prob[rows]}
    if embeds_forward is not None:
        importance = token_importance(token_scores, content, level=level, word_index=batch["word_index"])
        soft = soft_erasure_scores(
            embeds_forward, embeds, content, importance, logits=logits, generator=generator, samples=soft_samples
        )
        out |= {"soft_comp": soft.comp[rows], "soft_suff": soft.suff[rows]}
    metrics.update(**out)
    return out
