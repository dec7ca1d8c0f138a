"""Paired differences h(x ⊕ y⁺) − h(x ⊕ y⁻) at the last token: the deltas of the CAA and PCA (RepE) methods.

Design decision: states come from the steering hook point (decoder-layer outputs), as for GrAInS, and nothing is
masked or attributed; CAA takes their mean, PCA their oriented PC1 (``steering.methods``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import PaddingSide
from steering.activations import states_at
from steering.layers import resolve_layers
from steering.pairs import ContrastivePair, embed_inputs, encode_pair


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
