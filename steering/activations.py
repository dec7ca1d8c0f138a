"""Hidden states at one position per row, read by hooks at the steering hook point (decoder-layer outputs).

Design decision (vs the released code, docs/grains.md §2.4, defect #10): states are captured by forward hooks on the
same modules ``steer`` hooks, never from ``output_hidden_states[l + 1]`` (whose last entry is post-final-norm).
Rows are padded together (left or right, positions from the padding mask) and run in chunks without gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import PaddingSide, chunks, forward_padded, pad_batch
from steering.hooks import capture_layer_outputs


@torch.no_grad()
def states_at(
    model: nn.Module,
    rows: Sequence[torch.Tensor],
    positions: Sequence[int],
    layers: Sequence[int],
    attention_masks: Sequence[torch.Tensor] | None = None,
    padding_side: PaddingSide = "left",
    batch_size: int = 32,
) -> torch.Tensor:
    """Layer outputs (R, L, d) at ``positions[r]`` (index within row r, negative from its end) of embedding ``rows``.

    Args:
        rows: R tensors (T_r, d) of input embeddings.
        positions: R indices into the unpadded rows (e.g. ``-1`` = last token).
        layers: L decoder-layer indices.
        attention_masks: optional R tensors (T_r,) with 0 on attention-masked tokens.
    """
    if len(rows) != len(positions):
        raise ValueError(f"{len(rows)} rows but {len(positions)} positions")
    out = []
    with capture_layer_outputs(model, layers) as store:
        for idx in chunks(len(rows), batch_size):
            masks = [attention_masks[i] for i in idx] if attention_masks is not None else None
            batch = pad_batch([rows[i] for i in idx], padding_side, attention_masks=masks)
            forward_padded(model, batch)
            pos = [int(positions[i]) % int(batch.lengths[j]) + int(batch.offsets[j]) for j, i in enumerate(idx)]
            per_layer = [_pick(store[layer], pos) for layer in layers]  # L × (b, d)
            out.append(torch.stack(per_layer, dim=1))  # (b, L, d)
    return torch.cat(out)


def _pick(h: torch.Tensor, pos: list[int]) -> torch.Tensor:
    """Rows ``h[j, pos[j]]`` of hidden states (b, T, d) as fp32 CPU (b, d)."""
    return h[torch.arange(len(pos), device=h.device), torch.tensor(pos, device=h.device)].float().cpu()
