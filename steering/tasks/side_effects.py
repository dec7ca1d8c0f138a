"""Side effects of steering on text the steering is not about: KL to the base next-token distribution, perplexity.

Design decisions:
- Measured on the evaluation prompts themselves (the question text, no answer): KL(p_base ‖ p_steered) of the
  next-token distribution averaged over every prompt position, and the per-token NLL of the prompt under each model
  (perplexity = exp of the mean NLL over examples).
- Two halves, so a caller can get either distribution where it is cheapest: ``prompt_logprobs`` (one padded
  forward per batch, the log-probabilities at every prompt position) and ``side_effects`` (KL and NLL from a base
  and a steered list). The multiple-choice scorer reads the prompt positions of its packed rows anyway
  (``score_examples(prompt_logprobs=True)``), so a steered evaluation needs no second forward for the KL, and the
  base log-probabilities of fixed prompts are computed once and held by the caller (a sweep: once per method,
  not once per setting). ``prompt_side_effects`` is both halves in one call.
- Text only: rows with images are skipped by the caller (their image tokens need ``pixel_values``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.padding import chunks, forward_padded, pad_batch
from steering.hooks import AlphaUnit, Normalize, steer
from steering.scoring import encode_prompt
from steering.vectors import SteeringVector


@torch.no_grad()
def prompt_logprobs(model: nn.Module, tokenizer, prompts: Sequence[str], batch_size: int = 16) -> list[torch.Tensor]:
    """Next-token log-probabilities at every position of each prompt, (T_i, V) float32 on the CPU, under whatever
    steering is active."""
    device = next(model.parameters()).device
    out = []
    for idx in chunks(len(prompts), batch_size):
        batch = pad_batch([encode_prompt(tokenizer, prompts[i]).to(device) for i in idx], "right", pad_value=0)
        lp = forward_padded(model, batch).float().log_softmax(-1).cpu()  # (B, T, V)
        out += [lp[row, :n] for row, n in enumerate(batch.lengths.tolist())]
    return out


def side_effects(
    tokenizer, prompts: Sequence[str], base: Sequence[torch.Tensor], steered: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prompt: mean KL(base ‖ steered) over its positions and mean NLL per token under base and steered, each
    (N,), from the (T_i, V) log-probabilities of ``prompt_logprobs`` (or of the scorer's packed rows)."""
    if not len(prompts) == len(base) == len(steered):
        raise ValueError(f"{len(prompts)} prompts, {len(base)} base and {len(steered)} steered log-probabilities")
    kl, nll_base, nll_steer = [], [], []
    for prompt, b, s in zip(prompts, base, steered):
        if b.shape != s.shape:
            raise ValueError(f"base {tuple(b.shape)} and steered {tuple(s.shape)} log-probabilities differ in shape")
        kl.append(float((b.exp() * (b - s)).sum(-1).mean()))
        target = encode_prompt(tokenizer, prompt)[1:]  # token t+1 scored from position t
        n = max(len(target), 1)
        for lp, out in ((b, nll_base), (s, nll_steer)):
            out.append(float(-lp[:-1].gather(-1, target[:, None].to(lp.device)).sum()) / n)
    as_tensor = lambda xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731
    return as_tensor(kl), as_tensor(nll_base), as_tensor(nll_steer)


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
    alpha_unit: AlphaUnit = "absolute",
    base: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prompt: mean KL(base ‖ steered) over positions, mean NLL per token under base and steered; each (N,).
    The steering is ``steer(model, vector, alpha, layers, normalize=normalize, alpha_unit=alpha_unit)``; ``base``:
    the prompts' unsteered ``prompt_logprobs`` when the caller already holds them."""
    parts = []
    for idx in chunks(len(prompts), batch_size):  # a batch at a time: (T, V) per prompt is large
        batch = [prompts[i] for i in idx]
        b = prompt_logprobs(model, tokenizer, batch, batch_size) if base is None else [base[i] for i in idx]
        with steer(model, vector, alpha, layers=layers, normalize=normalize, alpha_unit=alpha_unit):
            s = prompt_logprobs(model, tokenizer, batch, batch_size)
        parts.append(side_effects(tokenizer, batch, b, s))
    kl, nll_base, nll_steer = (torch.cat(x) for x in zip(*parts))
    return kl, nll_base, nll_steer
