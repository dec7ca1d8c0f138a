"""Continuations of prompts: greedy generation in batches, their fluency under the base model, and a judge's verdict.

Design decisions:
- Greedy decoding of at most ``n_tokens`` tokens, written out (not ``model.generate``): prompts are left-padded with
  position ids from the padding mask (``lmcore.padding``) and decoded with the KV cache, so a batch gives the same
  tokens as one prompt at a time (tested) and whatever ``steer`` hooks are active apply to every step. A row stops
  at its first EOS (kept in its ids; later steps of a finished row are dropped).
- Fluency = the mean per-token NLL of the continuation given its prompt under the model **without** steering hooks
  (``continuation_nll`` is called outside ``steer``): base and steered continuations are scored by the same model, so
  a steered text that the base model finds unlikely (degenerate, off-distribution) shows up as a higher NLL;
  perplexity = exp of the mean NLL over prompts (the convention of ``side_effects.py``).
- ``judged_continuations`` runs generation under an optional steering context, then NLL and the judge
  (``classifier_judge.label_scores``) outside it, and keeps every per-prompt value so paired statistics
  (``lmcore.statistics``) can be computed from the run's records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from lmcore.attention_backends import variable_length_attention
from lmcore.padding import chunks, pad_batch
from steering.scoring import encode_prompt, response_logprob_from_logits
from steering.tasks.classifier_judge import Judge, label_scores


def _eos_ids(model: nn.Module, tokenizer) -> torch.Tensor:
    ids = {tokenizer.eos_token_id} if getattr(tokenizer, "eos_token_id", None) is not None else set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids |= set(config_eos) if isinstance(config_eos, (list, tuple)) else {config_eos}
    return torch.tensor(sorted(ids), dtype=torch.long)


@variable_length_attention()
@torch.no_grad()
def generate_continuations(
    model: nn.Module, tokenizer, prompts: Sequence[str], n_tokens: int, batch_size: int = 8
) -> list[torch.Tensor]:
    """Greedy continuation ids of each prompt: (m_i,) long on the CPU, 1 <= m_i <= ``n_tokens``, ending at the
    first EOS when one is generated. Runs under whatever hooks are active on ``model``.

    Raises:
        ValueError: ``n_tokens`` or ``batch_size`` < 1.
    """
    if n_tokens < 1:
        raise ValueError(f"n_tokens {n_tokens} must be >= 1")
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer).to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[torch.Tensor] = []
    for idx in chunks(len(prompts), batch_size):
        batch = pad_batch([encode_prompt(tokenizer, prompts[i]) for i in idx], "left", pad_value=pad)
        mask, pos = batch.attention_mask.to(device), batch.position_ids.to(device)
        res = model(input_ids=batch.values.to(device), attention_mask=mask, position_ids=pos, use_cache=True)
        steps, done = [], torch.zeros(len(idx), dtype=torch.bool, device=device)
        for step in range(n_tokens):
            token = res.logits[:, -1].argmax(-1)  # (B,)
            steps.append(token)
            done |= torch.isin(token, eos)
            if step == n_tokens - 1 or bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(len(idx), 1)], dim=1)
            pos = pos[:, -1:] + 1
            res = model(input_ids=token[:, None], attention_mask=mask, position_ids=pos,
                        past_key_values=res.past_key_values, use_cache=True)  # fmt: skip
        generated = torch.stack(steps, dim=1).cpu()  # (B, m)
        for row in generated:
            hits = torch.isin(row, eos.cpu()).nonzero()
            out.append(row[: int(hits[0]) + 1] if len(hits) else row)
    return out


@torch.no_grad()
def continuation_nll(
    model: nn.Module, tokenizer, prompts: Sequence[str], continuations: Sequence[torch.Tensor], batch_size: int = 8
) -> torch.Tensor:
    """(N,) float64 mean per-token NLL of each continuation (ids) given its prompt, under the active hooks."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    device = next(model.parameters()).device
    out = []
    for idx in chunks(len(prompts), batch_size):
        xs = [encode_prompt(tokenizer, prompts[i]) for i in idx]
        ys = [continuations[i].long() for i in idx]
        if any(y.numel() == 0 for y in ys):
            raise ValueError("every continuation needs at least one token")
        batch = pad_batch([torch.cat([x, y]).to(device) for x, y in zip(xs, ys)], "right", pad_value=0)
        resp = pad_batch([torch.cat([torch.zeros_like(x), torch.ones_like(y)]).bool().to(device)
                          for x, y in zip(xs, ys)], "right", pad_value=False).values  # fmt: skip
        logits = model(input_ids=batch.values, attention_mask=batch.attention_mask.to(device),
                       position_ids=batch.position_ids.to(device), use_cache=False).logits  # fmt: skip
        out.append(-response_logprob_from_logits(logits, batch.values, resp, "mean").double().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class JudgedContinuations:
    """Per prompt: the continuation (ids and decoded text), its NLL under the unsteered model and the judge's
    ``p_positive`` / ``positive_rate`` (each (N,) float64)."""

    ids: list[torch.Tensor]
    texts: list[str]
    nll: torch.Tensor
    p_positive: torch.Tensor
    positive_rate: torch.Tensor

    def metrics(self) -> dict[str, torch.Tensor]:
        """Per-prompt values by metric name; ``continuation_tokens`` (generated tokens, EOS included) shows a
        condition that stops early, whose shorter texts the judge then scores."""
        lengths = torch.tensor([len(y) for y in self.ids], dtype=torch.float64)
        return {"p_positive": self.p_positive, "positive_rate": self.positive_rate, "continuation_nll": self.nll,
                "continuation_tokens": lengths}  # fmt: skip


def judged_continuations(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    judge: Judge,
    target: int,
    n_tokens: int,
    batch_size: int = 8,
    steering: Callable[[], AbstractContextManager] | None = None,
) -> JudgedContinuations:
    """Generate under ``steering()`` (e.g. ``lambda: steer(model, vector, alpha)``; None = the base model), then score
    fluency without it and judge the decoded continuations (special tokens dropped) for label ``target``."""
    with steering() if steering is not None else contextlib.nullcontext():
        ids = generate_continuations(model, tokenizer, prompts, n_tokens, batch_size)
    texts = [tokenizer.decode(y, skip_special_tokens=True).strip() for y in ids]
    nll = continuation_nll(model, tokenizer, prompts, ids, batch_size)
    scores = label_scores(judge, texts, target)
    return JudgedContinuations(ids, texts, nll, scores["p_positive"], scores["positive_rate"])
