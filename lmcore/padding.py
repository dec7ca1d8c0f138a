"""Pad variable-length rows (token ids or embeddings) into one batch and run the model on it.

Design decisions:
- Position ids are derived from the *padding* mask (``cumsum - 1``), so a left-padded row sees the same positions as
  the unpadded row; HF causal LMs otherwise number left-padded tokens from the pad. This is what makes batched ==
  unbatched and left-pad == right-pad hold for extraction and scoring.
- Attention-zeroing masks are ANDed with the padding mask but never shift position ids (a masked token keeps its
  slot, as with the embedding-replacement masks).
- All extraction forwards go through ``inputs_embeds`` so text and merged VLM embeddings share one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from lmcore.choices import check_choice

PaddingSide = Literal["left", "right"]
PADDING_SIDES: tuple[str, ...] = get_args(PaddingSide)


@dataclass(frozen=True)
class PaddedBatch:
    """Rows padded to a common length ``T``.

    Attributes:
        values: (B, T) ids or (B, T, d) embeddings.
        attention_mask: (B, T) long; 0 on padding (and on attention-masked tokens).
        position_ids: (B, T) long; 0, 1, 2 … over each row's real tokens.
        offsets: (B,) index in the padded row of each row's first token (non-zero only with left padding).
        lengths: (B,) real length of each row.
    """

    values: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor


def check_padding_side(side: str) -> None:
    check_choice("padding_side", side, PaddingSide)


def pad_batch(
    rows: Sequence[torch.Tensor],
    side: PaddingSide = "right",
    pad_value: float | int = 0,
    attention_masks: Sequence[torch.Tensor] | None = None,
) -> PaddedBatch:
    """Pad ``rows`` (each (T_i,) or (T_i, d)) to (B, T[, d]); ``attention_masks`` (each (T_i,)) zero extra tokens."""
    check_padding_side(side)
    if len(rows) == 0:
        raise ValueError("pad_batch needs at least one row")
    lengths = torch.tensor([r.shape[0] for r in rows])
    T = int(lengths.max())
    first = rows[0]
    values = first.new_full((len(rows), T, *first.shape[1:]), pad_value)  # (B, T[, d])
    pad_mask = torch.zeros(len(rows), T, dtype=torch.long, device=first.device)  # (B, T)
    attn = torch.zeros_like(pad_mask)
    offsets = torch.zeros(len(rows), dtype=torch.long)
    for i, row in enumerate(rows):
        n = row.shape[0]
        start = T - n if side == "left" else 0
        offsets[i] = start
        values[i, start : start + n] = row
        pad_mask[i, start : start + n] = 1
        extra = attention_masks[i].to(attn) if attention_masks is not None else 1
        attn[i, start : start + n] = extra
    position_ids = (pad_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    return PaddedBatch(values, attn, position_ids, offsets, lengths)


def forward_padded(model: nn.Module, batch: PaddedBatch, logits_to_keep: int | torch.Tensor = 0) -> torch.Tensor:
    """Logits (B, T, V) for a padded batch of token ids (B, T) or of embeddings (B, T, d); with ``logits_to_keep``
    (an int n > 0: the last n positions; a tensor: those positions) only those (B, n, V)."""
    device = next(model.parameters()).device
    key = "input_ids" if batch.values.dim() == 2 else "inputs_embeds"
    out = model(
        **{key: batch.values.to(device)},
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
        **({"logits_to_keep": logits_to_keep} if not isinstance(logits_to_keep, int) or logits_to_keep else {}),
    )
    return out.logits


def chunks(n: int, size: int) -> list[range]:
    """Split ``range(n)`` into consecutive ranges of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"batch size {size} must be >= 1")
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
