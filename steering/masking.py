"""Select the top-k attributed input tokens (P: most positive, Q: most negative) and mask them out of the input.

Design decisions (vs the released code, docs/grains.md §2.3 and §2.12):
- Default masking replaces the token's (merged) embedding with the IG baseline (zero), so the masked input lies on
  the attribution path; the release replaced ids with ``pad_token_id`` (= EOS for Llama-3) and kept attention.
  ``pad_id`` / ``unk_id`` / ``mask_id`` / ``mean`` replace the embedding with that token's / the mean embedding;
  ``attention`` zeroes the attention mask at the position instead (positions are never renumbered).
- Selection works on a candidate mask (input tokens by default), with a separate k per modality for VLMs.
- ``random_positions`` (seeded) and "all candidates" are the no-attribution controls.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lmcore.choices import check_choice, choices

MaskMethod = Literal["baseline", "pad_id", "unk_id", "mask_id", "mean", "attention"]
MASK_METHODS = choices(MaskMethod)
Sign = Literal["pos", "neg"]


def check_mask_method(method: str) -> None:
    check_choice("mask", method, MaskMethod)


def top_k_positions(
    scores: torch.Tensor, k: int, sign: Sign = "pos", candidates: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices (≤ k,) of the k largest (``pos``) or smallest (``neg``) ``scores`` (n,) among ``candidates`` (n,) bool.

    Fewer than k candidates returns all of them, ordered by score. Ties break toward the earlier position.
    """
    if k < 1:
        raise ValueError(f"k {k} must be >= 1")
    check_choice("sign", sign, Sign)
    s = scores.float() if sign == "pos" else -scores.float()
    if candidates is not None:
        s = torch.where(candidates.bool().to(s.device), s, torch.full_like(s, -torch.inf))
        k = min(k, int(candidates.sum()))
    k = min(k, s.numel())
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.sort(s, descending=True, stable=True).indices
    return order[:k].cpu()


def random_positions(candidates: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k random candidate indices (the "no attribution" control); ``candidates`` (n,) bool."""
    if k < 1:
        raise ValueError(f"k {k} must be >= 1")
    pool = torch.nonzero(candidates.bool().cpu(), as_tuple=False)[:, 0]
    perm = torch.randperm(len(pool), generator=generator)
    return pool[perm[: min(k, len(pool))]].sort().values


def replacement_embedding(model: nn.Module, tokenizer, method: MaskMethod) -> torch.Tensor | None:
    """The (d,) vector that replaces a masked embedding; ``None`` for ``baseline`` (zeros) and ``attention``."""
    check_mask_method(method)
    if method in ("baseline", "attention"):
        return None
    weight = model.get_input_embeddings().weight  # (V, d)
    if method == "mean":
        return weight.detach().mean(0)
    attr = {"pad_id": "pad_token_id", "unk_id": "unk_token_id", "mask_id": "mask_token_id"}[method]
    token_id = getattr(tokenizer, attr, None)
    if token_id is None and method == "pad_id":  # released-code fallback: pad, else unk
        token_id = tokenizer.unk_token_id
    if token_id is None:
        raise ValueError(f"mask {method!r} needs tokenizer.{attr}, which is None for {type(tokenizer).__name__}")
    with torch.no_grad():
        return model.get_input_embeddings()(torch.tensor([token_id], device=weight.device))[0].detach()


def mask_positions(
    embeds: torch.Tensor,
    positions: torch.Tensor,
    method: MaskMethod = "baseline",
    replacement: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``positions`` of ``embeds`` (n, d); returns new embeddings (n, d) and an attention mask (n,) long.

    ``baseline``: zeros (the IG baseline); ``attention``: embeddings kept, attention mask 0 there; otherwise the
    rows become ``replacement`` (d,). The input is never modified in place.
    """
    check_mask_method(method)
    n = embeds.shape[0]
    attn = torch.ones(n, dtype=torch.long, device=embeds.device)
    pos = positions.to(embeds.device).long()
    if method == "attention":
        attn = attn.index_fill(0, pos, 0)
        return embeds.clone(), attn
    fill = torch.zeros_like(embeds[0]) if method == "baseline" else replacement
    if fill is None:
        raise ValueError(f"mask {method!r} needs a replacement embedding (see replacement_embedding)")
    out = embeds.clone()
    out[pos] = fill.to(out)
    return out, attn
