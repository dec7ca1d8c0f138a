"""Side effects of steering on text the steering is not about: KL to the base next-token distribution, perplexity.

Design decisions:
- Measured on the evaluation prompts themselves (the question text, no answer): KL(p_base ‖ p_steered) of the
  next-token distribution averaged over every prompt position, and the per-token NLL of the prompt under each model
  (perplexity = exp of the mean NLL over examples). Both need one padded forward per condition, no generation.
- Text only: rows with images are skipped by the caller (their image tokens need ``pixel_values``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import chunks, forward_padded, pad_batch
from steering.hooks import Normalize, steer
from steering.scoring import encode_prompt
from steering.vectors import SteeringVector


def _log_probs(model: nn.Module, batch) -> torch.Tensor:
    return forward_padded(model, batch).float().log_softmax(-1)  # (B, T, V)


@torch.no_grad()
def prompt_side_effects(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    vector: SteeringVector,
    alpha: float,
    layers: Sequence[int] | None = None,
    normalize: Normalize = "per_token",
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prompt: mean KL(base ‖ steered) over positions, mean NLL per token under base and steered; each (N,)."""
    device = next(model.parameters()).device
    kl, nll_base, nll_steer = [], [], []
    for idx in chunks(len(prompts), batch_size):
        ids = [encode_prompt(tokenizer, prompts[i]).to(device) for i in idx]
        batch = pad_batch(ids, "right", pad_value=0)
        valid = batch.attention_mask.bool()  # (B, T)
        base = _log_probs(model, batch)
        with steer(model, vector, alpha, layers=layers, normalize=normalize):
            steered = _log_probs(model, batch)
        kl_t = (base.exp() * (base - steered)).sum(-1)  # (B, T)
        kl.append(((kl_t * valid).sum(1) / valid.sum(1)).cpu())
        target = batch.values[:, 1:]  # (B, T-1): token t+1 scored from position t
        pred = valid[:, 1:]
        n = pred.sum(1).clamp_min(1)
        for lp, out in ((base, nll_base), (steered, nll_steer)):
            tok = -lp[:, :-1].gather(-1, target[..., None])[..., 0]  # (B, T-1)
            out.append(((tok * pred).sum(1) / n).cpu())
    return torch.cat(kl), torch.cat(nll_base), torch.cat(nll_steer)
