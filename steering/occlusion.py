"""Contrastive occlusion: per-token scores F(x) − F(x with token i masked), F = log p(y⁺|x) − log p(y⁻|x).

The gradient-free alternative to contrastive IG (``GrainsConfig.attribution="occlusion"``, docs/grains.md §6.9).

Design decisions:
- Token i is masked **exactly as the extraction masks P and Q** (``steering.masking.mask_positions`` with the
  config's ``mask`` and replacement embedding; zero embedding by default, the IG baseline), so the score is the drop
  in the very objective IG attributes caused by the very intervention that produces δ. Sign as IG's: > 0 pushes
  toward y⁺ (masking it lowers F). For F linear in the embeddings and the zero mask it equals the exact attribution
  x_i · ∇_{x_i} F, i.e. IG at any number of steps (tested).
- Only ``positions`` are scored (the extraction passes its candidates; default: every input token); the other scores
  are 0. Cost per example: 1 + |positions| no-grad forwards of one packed row x ⊕ y⁺ ⊕ y⁻ (``packed``, where
  ``packs_exactly`` and the mask replaces embeddings), else 2 (1 + |positions|) padded rows x ⊕ y±. With
  ``prefix_cache`` (default) the rows of a chunk of positions starting at p reuse the clean row's keys and values of
  x[:p] and run only x[p:] ⊕ y⁺ ⊕ y⁻ (exact: x's states do not depend on what follows; tested on every family). IG
  costs ``ig_steps`` forward and backward passes of the packed row (the backward needs no weight gradients, about
  one more forward), so occlusion is the cheaper one while |positions| < ~2 · ``ig_steps``: TruthfulQA prompts
  (~15–25 tokens) at 20 steps, not the QA primer (docs/grains.md §6.9 has the measurement).
- Rows are chunked by ``internal_batch_size`` (bounded memory); the chunking does not change the scores (tested).
- ``objective_value`` is F(x); there is no baseline value, so ``completeness_error`` is None (completeness is an IG
  property; the convergence gate ``max_completeness_error`` applies to IG only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import PaddingSide, check_padding_side, chunks, forward_padded, pad_batch
from steering.attribution import ContrastiveAttribution, EmbeddedTriple, packed_contrast, packs_exactly
from steering.masking import MaskMethod, check_mask_method, mask_positions
from steering.scoring import Objective, check_objective, response_logprob_from_logits


def _variants(t: EmbeddedTriple, positions: torch.Tensor, mask: MaskMethod, replacement: torch.Tensor | None):
    """[(embeds (n, d), attention (n,))]: x itself, then x with each of ``positions`` masked."""
    x = t.input_embeds.detach()
    clean = (x, torch.ones(len(x), dtype=torch.long, device=x.device))
    return [clean, *(mask_positions(x, p.reshape(1), mask, replacement) for p in positions)]


def _check_positions(positions: torch.Tensor, n: int, b: int) -> torch.Tensor:
    positions = torch.as_tensor(positions, dtype=torch.long).cpu().reshape(-1)
    if len(positions) and (positions.min() < 0 or positions.max() >= n):
        raise ValueError(f"positions {positions.tolist()} of example {b} are outside its {n} input tokens")
    return positions


def _prefix_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], start: int, rows: int):
    """A fresh cache of the first ``start`` positions of ``kv`` (per layer (1, h, T, d_h)), repeated for ``rows``."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k[:, :, :start].expand(rows, -1, -1, -1),
                                         v[:, :, :start].expand(rows, -1, -1, -1)) for k, v in kv])  # fmt: skip


@torch.no_grad()
def _packed_values(model, t, positions, variants, objective, internal_batch_size, prefix_cache) -> torch.Tensor:
    """F (1 + |positions|,) of each variant from packed rows variant ⊕ y⁺ ⊕ y⁻. With ``prefix_cache``, the rows of a
    chunk of (ascending) positions starting at p share x[:p] unchanged: its keys and values come from the clean row's
    forward, and only x[p:] ⊕ y⁺ ⊕ y⁻ is run."""
    packed = packed_contrast(model, t, objective)
    y = packed.base[packed.n :]
    order = torch.argsort(positions, stable=True)
    kv = None
    if prefix_cache and len(positions) and int(positions.max()) > 0:
        from transformers import DynamicCache

        cache = DynamicCache()  # filled by the clean row's forward: x's keys / values depend on x only (causal)
        out = [packed.logprobs(model, packed.base[None], 0, cache)]
        kv = [(layer.keys, layer.values) for layer in cache.layers]
    else:
        out = [packed.logprobs(model, packed.base[None])]  # the clean row
    for idx in chunks(len(order), internal_batch_size):
        rows_idx = [int(order[i]) for i in idx]
        start = int(positions[rows_idx[0]]) if kv is not None else 0
        rows = torch.stack([torch.cat([variants[1 + r][0][start:].to(y), y]) for r in rows_idx])  # (R, Q − start, d)
        cache = _prefix_cache(kv, start, len(rows)) if start > 0 else None
        out.append(packed.logprobs(model, rows, start, cache))
    lp = torch.cat(out)  # (1 + |positions|, 2) in the order clean, then ascending positions
    f = (lp[:, 0] - lp[:, 1]).cpu()
    result = torch.empty(1 + len(positions))
    result[0], result[1 + order] = f[0], f[1:]
    return result


@torch.no_grad()
def _padded_values(model, triples, variants, objective, internal_batch_size, side) -> list[torch.Tensor]:
    """F per variant per example from padded rows variant ⊕ y⁺ and variant ⊕ y⁻ (attention masks kept)."""
    emb = model.get_input_embeddings()
    jobs = [(b, r, s) for b, vs in enumerate(variants) for r in range(len(vs)) for s in (1, -1)]
    lps = []
    for idx in chunks(len(jobs), internal_batch_size):
        rows, attn, ids, resp = [], [], [], []
        for b, r, s in (jobs[i] for i in idx):
            t, (x, a) = triples[b], variants[b][r]
            y = (t.preferred_ids if s > 0 else t.dispreferred_ids).to(x.device)
            rows.append(torch.cat([x, emb(y.to(emb.weight.device)).to(x)]))
            attn.append(torch.cat([a, torch.ones(len(y), dtype=torch.long, device=a.device)]))
            ids.append(torch.cat([torch.zeros(len(x), dtype=torch.long, device=y.device), y]))
            resp.append(torch.cat([torch.zeros(len(x), dtype=torch.bool), torch.ones(len(y), dtype=torch.bool)]))
        batch = pad_batch(rows, side, attention_masks=attn)
        id_batch = pad_batch(ids, side).values
        resp_batch = pad_batch([r.to(id_batch.device) for r in resp], side, pad_value=False).values
        logits = forward_padded(model, batch)
        lps.append(response_logprob_from_logits(logits, id_batch.to(logits.device), resp_batch.to(logits.device),
                                                objective).float().cpu())  # fmt: skip
    lp = torch.cat(lps).view(-1, 2)  # (Σ R_b, sign)
    f = lp[:, 0] - lp[:, 1]
    return list(f.split([len(vs) for vs in variants]))


def contrastive_occlusion_embeds(
    model: nn.Module,
    triples: Sequence[EmbeddedTriple],
    positions: Sequence[torch.Tensor] | None = None,
    mask: MaskMethod = "baseline",
    replacement: torch.Tensor | None = None,
    objective: Objective = "sum",
    internal_batch_size: int = 32,
    padding_side: PaddingSide = "left",
    packed: bool = True,
    prefix_cache: bool = True,
) -> list[ContrastiveAttribution]:
    """Occlusion scores (n,) per example: F(x) − F(x with token i masked) at ``positions[b]`` (default: all), 0
    elsewhere; ``mask`` / ``replacement`` as ``steering.masking.mask_positions`` (see the module docstring).

    Raises:
        ValueError: no example, a position outside its input, a bad objective / mask / padding side, or a batch size
            below 1.
    """
    check_objective(objective)
    check_mask_method(mask)
    check_padding_side(padding_side)
    if len(triples) == 0:
        raise ValueError("contrastive_occlusion_embeds needs at least one example")
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size {internal_batch_size} must be >= 1")
    if positions is not None and len(positions) != len(triples):
        raise ValueError(f"{len(positions)} position lists for {len(triples)} examples")
    if positions is None:
        positions = [torch.arange(len(t.input_embeds)) for t in triples]
    positions = [_check_positions(p, len(t.input_embeds), b) for b, (t, p) in enumerate(zip(triples, positions))]
    variants = [_variants(t, p, mask, replacement) for t, p in zip(triples, positions)]
    if packed and mask != "attention" and packs_exactly(model, triples):
        values = [_packed_values(model, t, p, v, objective, internal_batch_size, prefix_cache)
                  for t, p, v in zip(triples, positions, variants)]  # fmt: skip
    else:
        values = _padded_values(model, triples, variants, objective, internal_batch_size, padding_side)
    out = []
    for t, p, f in zip(triples, positions, values):
        scores = torch.zeros(len(t.input_embeds), dtype=torch.float32)
        scores[p] = f[0] - f[1:]
        out.append(ContrastiveAttribution(scores.to(t.input_embeds.device), objective_value=float(f[0])))
    return out
