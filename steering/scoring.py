"""Response log-likelihood log p(y | x): the quantity GrAInS attributes and the margin the tests evaluate.

Design decisions:
- Response token ``t`` is scored with the logits at position ``t - 1`` (teacher forcing). The released code scored
  the *last* token with the logits at the *last* position (the probability of emitting it again, docs/grains.md §2.2,
  defect #8); that is available only as the labelled ``objective="legacy_off_by_one"``.
- ``sum`` (default, the sequence log-likelihood), ``mean`` (length-normalised) and ``last_token`` (the response's
  final token only) are the canonical objectives. log-softmax runs in fp32 on the response positions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from lmcore.attention_backends import variable_length_attention
from lmcore.choices import check_choice, choices
from lmcore.padding import PaddingSide, chunks, forward_padded, pad_batch

Objective = Literal["sum", "mean", "last_token", "legacy_off_by_one"]
OBJECTIVES = choices(Objective)


def check_objective(objective: str) -> None:
    check_choice("objective", objective, Objective)


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last True in each row of ``mask`` (B, T)."""
    T = mask.shape[1]
    idx = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask, idx, torch.full_like(idx, -1)).max(dim=1).values


def response_logprob_from_logits(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, objective: Objective = "sum"
) -> torch.Tensor:
    """log p(response | prompt) per row.

    Args:
        logits: (B, T, V) model outputs for the full sequences prompt ⊕ response.
        input_ids: (B, T) the token ids of those sequences.
        response_mask: (B, T) bool, True on response tokens; position 0 must not be a response token.
        objective: ``sum`` | ``mean`` | ``last_token`` | ``legacy_off_by_one`` (reproduces the released code).

    Returns:
        (B,) fp32 scores, differentiable w.r.t. ``logits``.
    """
    check_objective(objective)
    response_mask = response_mask.bool()
    if not response_mask.any(dim=1).all():
        raise ValueError("every row needs at least one response token in response_mask")
    B = logits.shape[0]
    rows = torch.arange(B, device=logits.device)
    last = _last_index(response_mask)  # (B,)
    if objective == "legacy_off_by_one":
        lp = logits[rows, last].float().log_softmax(-1)  # (B, V): logits at the last position, not last - 1
        return lp.gather(-1, input_ids[rows, last][:, None])[:, 0]
    if response_mask[:, 0].any():
        raise ValueError("response tokens need a preceding prompt token; response_mask[:, 0] must be False")
    if objective == "last_token":
        lp = logits[rows, last - 1].float().log_softmax(-1)  # (B, V)
        return lp.gather(-1, input_ids[rows, last][:, None])[:, 0]
    target = response_mask[:, 1:]  # (B, T-1): token t+1 is scored from the logits at t
    sel = logits[:, :-1][target].float().log_softmax(-1)  # (N, V)
    tok_lp = sel.gather(-1, input_ids[:, 1:][target][:, None])[:, 0]  # (N,)
    row_of = rows[:, None].expand_as(target)[target]  # (N,)
    total = torch.zeros(B, device=logits.device, dtype=tok_lp.dtype).index_add(0, row_of, tok_lp)
    if objective == "mean":
        total = total / target.sum(dim=1).to(total.dtype)
    return total


def encode_prompt(tokenizer, prompt: str) -> torch.Tensor:
    """Token ids (n,) of ``prompt`` with the tokenizer's special tokens, unless the text already starts with its BOS
    token (a rendered chat template of Llama 3, Gemma, …): then it is tokenised as is, so BOS is never doubled."""
    bos = getattr(tokenizer, "bos_token", None)
    special = not (bos and prompt.startswith(bos))
    return tokenizer(prompt, add_special_tokens=special, return_tensors="pt").input_ids[0]


def encode_prompt_response(tokenizer, prompt: str, response: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (n,) of ``prompt`` (:func:`encode_prompt`) and (m,) of ``response`` (no special tokens).

    The two are tokenised separately and concatenated as ids, so the prompt/response boundary is exact.
    """
    x = encode_prompt(tokenizer, prompt)
    y = tokenizer(response, add_special_tokens=False, return_tensors="pt").input_ids[0]
    if x.numel() == 0 or y.numel() == 0:
        raise ValueError(f"empty tokenisation: prompt {prompt!r} -> {x.numel()} tokens, response {response!r} -> "
                         f"{y.numel()} tokens")  # fmt: skip
    return x, y


@variable_length_attention()
@torch.no_grad()
def score_responses(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    objective: Objective = "sum",
    batch_size: int = 8,
    padding_side: PaddingSide = "right",
) -> torch.Tensor:
    """log p(response_i | prompt_i) for each pair, batched; returns (N,) fp32 on the CPU."""
    check_objective(objective)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    device = next(model.parameters()).device
    out = []
    encoded = [encode_prompt_response(tokenizer, p, r) for p, r in zip(prompts, responses)]
    for idx in chunks(len(encoded), batch_size):
        seqs = [torch.cat(encoded[i]) for i in idx]
        masks = [torch.cat([torch.zeros_like(encoded[i][0]), torch.ones_like(encoded[i][1])]).bool() for i in idx]
        batch = pad_batch([s.to(device) for s in seqs], padding_side, pad_value=0)
        resp = pad_batch([m.to(device) for m in masks], padding_side, pad_value=False).values
        logits = forward_padded(model, batch)
        out.append(response_logprob_from_logits(logits, batch.values, resp, objective).cpu())
    return torch.cat(out)
