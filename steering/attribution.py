"""Contrastive Integrated Gradients over input embeddings: per-token signed scores for F = log p(y⁺|x) − log p(y⁻|x).

Design decisions (vs the released code, docs/grains.md §2.2 and §2.11):
- F uses the correct response log-likelihood (``steering.scoring``); ``legacy_off_by_one`` only on request.
- The IG path interpolates the *input* embeddings x (zero baseline) shared by both sequences, so one score per input
  token covers both terms of F; the released code attributed s⁺ and s⁻ separately over all their tokens.
  ``include_response=True`` also interpolates the response embeddings and scores them.
- IG runs **once** per example (the release recomputed it for the pos and the neg runs); the 2m interpolation rows
  (m steps × {y⁺, y⁻}) of a whole batch of examples are chunked by ``internal_batch_size``; gradients come from
  ``torch.autograd.grad`` w.r.t. the inputs only and accumulate in fp32.
- Quadrature nodes/weights are captum's (``gausslegendre`` default), so results match ``IntegratedGradients``.
- ``packed`` (default): each IG row holds α·x **once**, then y⁺ and y⁻ (``lmcore.packing.pack_groups``: a
  block-causal mask lets each response see x and its own earlier tokens only, positions restart after x). Today's
  two rows per step share the same α·x, and x's states do not depend on what follows it, so the gradient that
  reaches the one copy of x is the sum of the two rows' gradients: the same IG, from one row of n + m⁺ + m⁻ tokens
  instead of two of n + m± (docs/grains.md §2.10). Only the positions that predict a response token reach the LM
  head. Used where packing is exact (``packing_supported``: eager / SDPA attention, no sliding window shorter than
  the row; no whole-sequence ``steer`` active); padded rows otherwise. Steps are chunked per example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lmcore.packing import PackedRow, model_attention_mask, pack_groups, packing_supported
from lmcore.padding import PaddingSide, chunks, forward_padded, pad_batch
from lmcore.quadrature import Quadrature, quadrature_points
from steering.hooks import steers_whole_sequences
from steering.scoring import Objective, check_objective, response_logprob_from_logits

IGMethod = Quadrature  # the one IG quadrature (lmcore.quadrature); captum's rules and names


@dataclass(frozen=True)
class EmbeddedTriple:
    """One example in embedding space.

    Attributes:
        input_embeds: (n, d) embeddings of the input x (merged text + image embeddings for a VLM).
        preferred_ids: (m⁺,) token ids of y⁺.
        dispreferred_ids: (m⁻,) token ids of y⁻.
    """

    input_embeds: torch.Tensor
    preferred_ids: torch.Tensor
    dispreferred_ids: torch.Tensor


@dataclass(frozen=True)
class ContrastiveAttribution:
    """IG result for one example.

    Attributes:
        scores: (n,) signed per-input-token scores (IG summed over d); > 0 pushes toward y⁺.
        preferred_scores: (m⁺,) scores of y⁺'s tokens, only with ``include_response=True``.
        dispreferred_scores: (m⁻,) scores of y⁻'s tokens (their contribution to F, so typically ≤ 0).
        objective_value: F at the input, if computed.
        baseline_value: F at the baseline, if computed.
    """

    scores: torch.Tensor
    preferred_scores: torch.Tensor | None = None
    dispreferred_scores: torch.Tensor | None = None
    objective_value: float | None = None
    baseline_value: float | None = None

    @property
    def total(self) -> float:
        extra = [s.sum() for s in (self.preferred_scores, self.dispreferred_scores) if s is not None]
        return float(self.scores.sum() + sum(extra, torch.tensor(0.0)))

    @property
    def completeness_error(self) -> float | None:
        """Σ scores − (F(x) − F(x')): IG's completeness gap, → 0 as the number of steps grows."""
        if self.objective_value is None or self.baseline_value is None:
            return None
        return self.total - (self.objective_value - self.baseline_value)


def _embed_ids(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    emb = model.get_input_embeddings()
    return emb(ids.to(emb.weight.device))


def _rows(
    model: nn.Module, triples: Sequence[EmbeddedTriple], jobs: Sequence[tuple[int, int, float]], include_response: bool
):
    """Embedding rows α·x ⊕ (α·)y for jobs (example b, sign ±1, α); returns rows, ids rows, response masks."""
    rows, ids, resp = [], [], []
    for b, sign, alpha in jobs:
        t = triples[b]
        y = t.preferred_ids if sign > 0 else t.dispreferred_ids
        y = y.to(t.input_embeds.device)
        y_emb = _embed_ids(model, y).to(t.input_embeds.dtype)  # (m, d)
        x_part = t.input_embeds * alpha
        rows.append(torch.cat([x_part, y_emb * alpha if include_response else y_emb]))  # (n + m, d)
        n = t.input_embeds.shape[0]
        ids.append(torch.cat([torch.zeros(n, dtype=torch.long, device=y.device), y]))
        resp.append(torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(len(y), dtype=torch.bool)]))
    return rows, ids, resp


def _logprobs(model, rows, ids, resp, objective, side) -> tuple[torch.Tensor, object]:
    batch = pad_batch(rows, side)
    id_batch = pad_batch(ids, side).values
    resp_batch = pad_batch([r.to(id_batch.device) for r in resp], side, pad_value=False).values
    logits = forward_padded(model, batch)
    return response_logprob_from_logits(logits, id_batch, resp_batch, objective), batch


def contrastive_ig_embeds(
    model: nn.Module,
    triples: Sequence[EmbeddedTriple],
    n_steps: int = 20,
    method: IGMethod = "gausslegendre",
    objective: Objective = "sum",
    include_response: bool = False,
    internal_batch_size: int = 32,
    padding_side: PaddingSide = "right",
    check_completeness: bool = True,
    packed: bool = True,
) -> list[ContrastiveAttribution]:
    """Contrastive IG for a batch of examples, zero baseline, one IG per example (see module docstring).

    Cost per example: ``n_steps`` forward+backward passes over one packed row x ⊕ y⁺ ⊕ y⁻ (``packed`` where
    ``packs_exactly``; else ``2 · n_steps`` over padded rows x ⊕ y±), plus, with ``check_completeness``, one no-grad
    pass of 2 packed rows (else 4 padded ones): F at the input and at the baseline.
    """
    check_objective(objective)
    if len(triples) == 0:
        raise ValueError("contrastive_ig_embeds needs at least one example")
    if packed and packs_exactly(model, triples):
        return [
            _packed_ig(model, t, n_steps, method, objective, include_response, internal_batch_size, check_completeness)
            for t in triples
        ]
    alphas, weights = (t.tolist() for t in quadrature_points(n_steps, method))
    jobs = [(b, s, j) for b in range(len(triples)) for s in (1, -1) for j in range(n_steps)]
    grad_x = [torch.zeros(t.input_embeds.shape, dtype=torch.float32, device=t.input_embeds.device) for t in triples]
    grad_y = {(b, s): None for b in range(len(triples)) for s in (1, -1)}
    with torch.enable_grad():
        for idx in chunks(len(jobs), internal_batch_size):
            chunk = [(jobs[i][0], jobs[i][1], alphas[jobs[i][2]]) for i in idx]
            rows, ids, resp = _rows(model, triples, chunk, include_response)
            rows = [r.detach() for r in rows]
            batch = pad_batch(rows, padding_side)
            leaf = batch.values.detach().requires_grad_(True)  # (R, T, d)
            id_batch = pad_batch(ids, padding_side).values
            resp_batch = pad_batch([r.to(id_batch.device) for r in resp], padding_side, pad_value=False).values
            logits = model(inputs_embeds=leaf, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False).logits  # fmt: skip
            lp = response_logprob_from_logits(logits, id_batch, resp_batch, objective)  # (R,)
            coef = torch.tensor([s * weights[jobs[i][2]] for i, (_, s, _) in zip(idx, chunk)], device=lp.device)
            (grad,) = torch.autograd.grad((lp * coef).sum(), leaf)  # (R, T, d)
            for r, (b, s, _) in enumerate(chunk):
                n = triples[b].input_embeds.shape[0]
                o = int(batch.offsets[r])
                grad_x[b] += grad[r, o : o + n].float()
                if include_response:
                    m = int(batch.lengths[r]) - n
                    g = grad[r, o + n : o + n + m].float()
                    grad_y[(b, s)] = g if grad_y[(b, s)] is None else grad_y[(b, s)] + g
    values: list[tuple[float, float] | tuple[None, None]] = [(None, None)] * len(triples)
    if check_completeness:
        values = _objective_values(model, triples, objective, include_response, internal_batch_size, padding_side)
    out = []
    for b, t in enumerate(triples):
        scores = (t.input_embeds.float() * grad_x[b]).sum(-1)  # (n,)
        pos_s = neg_s = None
        if include_response:
            pos_s = (_embed_ids(model, t.preferred_ids).float() * grad_y[(b, 1)]).sum(-1).detach()  # (m⁺,)
            neg_s = (_embed_ids(model, t.dispreferred_ids).float() * grad_y[(b, -1)]).sum(-1).detach()  # (m⁻,)
        out.append(ContrastiveAttribution(scores.detach(), pos_s, neg_s, *values[b]))
    return out


@torch.no_grad()
def _objective_values(model, triples, objective, include_response, internal_batch_size, side):
    """F(x) and F(x') per example from 4 no-grad sequence passes each: (y⁺, y⁻) × (α = 1, α = 0)."""
    jobs = [(b, s, a) for b in range(len(triples)) for a in (1.0, 0.0) for s in (1, -1)]
    lps = []
    for idx in chunks(len(jobs), internal_batch_size):
        rows, ids, resp = _rows(model, triples, [jobs[i] for i in idx], include_response)
        lps.append(_logprobs(model, rows, ids, resp, objective, side)[0].float().cpu())
    lp = torch.cat(lps).view(len(triples), 2, 2)  # (B, α ∈ {1, 0}, sign ∈ {+, −})
    f = lp[..., 0] - lp[..., 1]  # (B, 2)
    return [(float(f[b, 0]), float(f[b, 1])) for b in range(len(triples))]


def packs_exactly(model: nn.Module, triples: Sequence[EmbeddedTriple]) -> bool:
    """Whether the packed rows x ⊕ y⁺ ⊕ y⁻ give exactly the padded rows' IG on ``model`` (``lmcore.packing``); the
    longest packed row must fit a sliding window, and no whole-sequence ``steer`` may be active."""
    longest = max(len(t.input_embeds) + len(t.preferred_ids) + len(t.dispreferred_ids) for t in triples)
    return packing_supported(model, longest) and not steers_whole_sequences(model)


def _score_layout(row: PackedRow, n: int, m_pos: int, objective: Objective):
    """(keep, targets, owner, divisor) of the packed row x ⊕ y⁺ ⊕ y⁻ for ``objective``: which positions reach the LM
    head, the token each one scores, which response (0 = y⁺, 1 = y⁻) it belongs to, and the per-response divisor."""
    m = torch.bincount(row.owner, minlength=2).float()  # (2,) m⁺, m⁻
    if objective in ("sum", "mean"):
        return row.keep, row.targets, row.owner, m if objective == "mean" else torch.ones(2)
    last = torch.tensor([m_pos - 1, len(row.keep) - 1])  # each response's last scored token, in row.keep
    if objective == "last_token":
        return row.keep[last], row.targets[last], torch.arange(2), torch.ones(2)
    ends = torch.tensor([n + m_pos - 1, len(row.ids) - 1])  # legacy: the last token's own position, scoring itself
    return ends, row.ids[ends], torch.arange(2), torch.ones(2)


@dataclass(frozen=True)
class PackedContrast:
    """One example's packed row x ⊕ y⁺ ⊕ y⁻ and how F is read from it; shared by IG and occlusion.

    Attributes:
        base: (Q, d) embeddings x ⊕ emb(y⁺) ⊕ emb(y⁻), Q = n + m⁺ + m⁻. n: the input length.
        mask: (1, 1, Q, Q) the block-causal mask as the model takes it. positions: (1, Q) position ids.
        keep / targets / owner / divisor: ``_score_layout`` for the objective, on the model's device.
    """

    base: torch.Tensor
    n: int
    mask: torch.Tensor
    positions: torch.Tensor
    keep: torch.Tensor
    targets: torch.Tensor
    owner: torch.Tensor
    divisor: torch.Tensor

    def logprobs(self, model: nn.Module, rows: torch.Tensor, start: int = 0, cache=None) -> torch.Tensor:
        """log p(y⁺|·), log p(y⁻|·) (R, 2) fp32 for rows (R, Q − start, d) laid out as ``base[start:]``
        (differentiable); with ``start`` > 0, ``cache`` holds the keys and values of positions ``0 … start − 1``."""
        R = len(rows)
        logits = model(inputs_embeds=rows, attention_mask=self.mask[:, :, start:].expand(R, -1, -1, -1),
                       position_ids=self.positions[:, start:].expand(R, -1), past_key_values=cache,
                       use_cache=cache is not None, logits_to_keep=self.keep - start).logits  # fmt: skip
        tok = logits.float().log_softmax(-1).gather(-1, self.targets[None, :, None].expand(R, -1, 1))[..., 0]  # (R, K)
        return torch.zeros(R, 2, device=rows.device).index_add(1, self.owner, tok) / self.divisor  # (R, 2)


def packed_contrast(model: nn.Module, t: EmbeddedTriple, objective: Objective) -> PackedContrast:
    """The packed row of ``t`` (use where ``packs_exactly``); embeddings in ``t.input_embeds``' dtype and device."""
    device = t.input_embeds.device
    n, y_pos, y_neg = t.input_embeds.shape[0], t.preferred_ids.to(device), t.dispreferred_ids.to(device)
    row = pack_groups([(torch.zeros(n, dtype=torch.long), [y_pos.cpu(), y_neg.cpu()])])
    keep, targets, owner, divisor = (v.to(device) for v in _score_layout(row, n, len(y_pos), objective))
    with torch.no_grad():
        y_emb = _embed_ids(model, torch.cat([y_pos, y_neg])).to(t.input_embeds.dtype)  # (m⁺ + m⁻, d)
    base = torch.cat([t.input_embeds.detach(), y_emb])  # (Q, d)
    mask = model_attention_mask(row.allowed, model).to(device)[None, None]  # (1, 1, Q, Q)
    return PackedContrast(base, n, mask, row.positions.to(device)[None], keep, targets, owner, divisor)


def _packed_ig(model, t: EmbeddedTriple, n_steps, method, objective, include_response, internal_batch_size,
               check_completeness) -> ContrastiveAttribution:  # fmt: skip
    """IG of one example from packed rows α·x ⊕ (α·)y⁺ ⊕ (α·)y⁻, one row per step (module docstring)."""
    device = t.input_embeds.device
    n, y_pos = t.input_embeds.shape[0], t.preferred_ids
    packed = packed_contrast(model, t, objective)
    base = packed.base
    scaled = torch.ones(len(base), dtype=torch.bool, device=device)
    if not include_response:
        scaled[n:] = False

    def contrast(alphas: torch.Tensor, keep_graph: bool):
        """Leaf rows (R, Q, d) at ``alphas`` (R,) and their F components log p(y±|·) (R, 2)."""
        scale = torch.where(scaled, alphas[:, None], torch.ones_like(alphas)[:, None])  # (R, Q)
        leaf = (base[None] * scale[..., None].to(base.dtype)).requires_grad_(keep_graph)
        return leaf, packed.logprobs(model, leaf)

    nodes, weights = quadrature_points(n_steps, method)
    grad = torch.zeros(base.shape, dtype=torch.float32, device=device)  # Σ_j w_j ∇F at α_j, (Q, d)
    with torch.enable_grad():
        for idx in chunks(n_steps, internal_batch_size):
            leaf, lp = contrast(nodes[list(idx)].to(device, base.dtype), True)
            f = lp[:, 0] - lp[:, 1]  # (R,)
            (g,) = torch.autograd.grad((f * weights[list(idx)].to(f)).sum(), leaf)
            grad += g.float().sum(0)
    values: tuple[float, float] | tuple[None, None] = (None, None)
    if check_completeness:
        with torch.no_grad():
            lp = contrast(torch.tensor([1.0, 0.0], device=device, dtype=base.dtype), False)[1]
        values = (float(lp[0, 0] - lp[0, 1]), float(lp[1, 0] - lp[1, 1]))
    token_scores = (base.float() * grad).sum(-1).detach()  # (Q,)
    pos_s = neg_s = None
    if include_response:
        pos_s, neg_s = token_scores[n : n + len(y_pos)], token_scores[n + len(y_pos) :]
    return ContrastiveAttribution(token_scores[:n], pos_s, neg_s, *values)


def contrastive_ig(
    model: nn.Module,
    input_ids: torch.Tensor,
    preferred_ids: torch.Tensor,
    dispreferred_ids: torch.Tensor,
    **kwargs,
) -> ContrastiveAttribution:
    """Contrastive IG for one text example given token ids (n,), (m⁺,), (m⁻,); kwargs as ``contrastive_ig_embeds``."""
    with torch.no_grad():
        x = _embed_ids(model, input_ids)  # (n, d)
    return contrastive_ig_embeds(model, [EmbeddedTriple(x, preferred_ids, dispreferred_ids)], **kwargs)[0]
