"""Median hidden-state norm per layer, the unit of ``steer(..., alpha_unit="layer_norm")`` (docs/grains.md §6.7).

Per-token norms of decoder-layer outputs grow with depth (SmolLM2-135M: ~130 at layers 8–11, ~300 at 20–23), so one
absolute α is a much larger push at early layers than at late ones and a layer comparison at one α is confounded.
Expressed in units of each layer's median norm, α = 0.1 means "a tenth of a typical hidden state" at every layer.

Design decisions:
- Norms are read at the hook point ``steer`` writes to (``capture_layer_outputs``), over every real token of the
  given prompts except position 0 (the attention sink, often an outlier ~10× the others), padding excluded.
- The median, not the mean: a few outlier tokens do not move it.
- The values travel in the vector's metadata (``layer_norms``), so the vector file says what its α unit means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import chunks, forward_padded, pad_batch
from steering.hooks import capture_layer_outputs
from steering.scoring import encode_prompt
from steering.vectors import SteeringVector


@torch.no_grad()
def median_layer_norms(
    model: nn.Module, tokenizer, prompts: Sequence[str], layers: Sequence[int], batch_size: int = 8
) -> dict[int, float]:
    """Median per-token L2 norm of each layer's output over ``prompts`` (position 0 and padding excluded).

    Raises:
        ValueError: no prompts, or no token besides position 0.
    """
    if not prompts:
        raise ValueError("median_layer_norms needs at least one prompt")
    emb = model.get_input_embeddings()
    rows = [emb(encode_prompt(tokenizer, p).to(emb.weight.device)) for p in prompts]
    norms: dict[int, list[torch.Tensor]] = {int(layer): [] for layer in layers}
    with capture_layer_outputs(model, list(layers)) as store:
        for idx in chunks(len(rows), batch_size):
            batch = pad_batch([rows[i] for i in idx], "right")
            forward_padded(model, batch)
            for layer in norms:
                h = store[layer].float()  # (b, T, d)
                for j, n in enumerate(batch.lengths.tolist()):
                    norms[layer].append(h[j, 1:n].norm(dim=-1).cpu())
    out = {}
    for layer, parts in norms.items():
        values = torch.cat(parts)
        if values.numel() == 0:
            raise ValueError("the prompts have no token besides position 0: give longer prompts")
        out[layer] = float(values.median())
    return out


def with_layer_norms(vector: SteeringVector, norms: dict[int, float]) -> SteeringVector:
    """``vector`` with ``layer_norms`` in its metadata (JSON keys are strings), for ``alpha_unit="layer_norm"``.

    Raises:
        ValueError: a steered layer has no norm, or a norm is not positive.
    """
    missing = [layer for layer in vector.layers if layer not in norms]
    bad = {layer: v for layer, v in norms.items() if not v > 0}
    if missing or bad:
        raise ValueError(f"layer norms must cover every steered layer with a positive value: missing {missing}, "
                         f"not positive {bad}")  # fmt: skip
    return vector.with_metadata(layer_norms={str(layer): float(norms[layer]) for layer in vector.layers})
