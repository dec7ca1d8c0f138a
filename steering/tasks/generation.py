"""Generation tasks (MMHal-Bench style): answers generated with and without steering, scored by a pluggable judge.

Design decisions:
- A judge is any callable ``judge(example, answer) -> float`` on MMHal's 0–6 scale; the hallucination rate is the
  fraction of answers scoring below 3 (MMHal-Bench's rule). The module takes its dotted import path, so a GPT-4 or
  local-LLM judge is a config change; no network judge is needed to run anything else.
- ``reference_overlap_judge`` is the offline default: 6 × token-F1 between the answer and the reference answer. It
  is a cheap proxy for wiring and smoke runs, **not** the paper's GPT-4 judge; reports must say which judge ran.
- Greedy decoding, one example at a time (VLM inputs differ in length and image count), KV cache on.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from lmcore.attention_backends import variable_length_attention
from steering.scoring import encode_prompt
from steering.tasks.types import GenExample

Judge = Callable[[GenExample, str], float]
HALLUCINATION_BELOW = 3.0


def load_judge(path: str) -> Judge:
    """Import ``module.attribute`` and check it is callable."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"judge {path!r} must be a dotted path 'package.module.callable'")
    judge = getattr(importlib.import_module(module), name, None)
    if not callable(judge):
        raise ValueError(f"judge {path!r} is not a callable")
    return judge


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def reference_overlap_judge(example: GenExample, answer: str) -> float:
    """Offline proxy judge: 6 × token-F1(answer, reference) (0 = no overlap, 6 = same bag of words)."""
    a, r = _tokens(answer), _tokens(example.reference)
    if not a or not r:
        return 0.0
    common = sum(min(a.count(t), r.count(t)) for t in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 6.0 * 2 * precision * recall / (precision + recall)


@variable_length_attention()
@torch.no_grad()
def generate_answers(
    model: nn.Module, tokenizer, examples: Sequence[GenExample], max_new_tokens: int = 128
) -> list[str]:
    """Greedy answers (decoded, special tokens dropped) for each example, one at a time."""
    device = next(model.parameters()).device
    out = []
    for ex in examples:
        ids = encode_prompt(tokenizer, ex.prompt)[None].to(device)  # (1, n)
        extra = {} if ex.pixel_values is None else {"pixel_values": ex.pixel_values.to(device), **ex.image_kwargs}
        seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, use_cache=True, pad_token_id=tokenizer.pad_token_id, **extra)  # fmt: skip
        out.append(tokenizer.decode(seq[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return out


def judge_scores(judge: Judge, examples: Sequence[GenExample], answers: Sequence[str]) -> torch.Tensor:
    """(N,) float64 judge scores, validated to lie in [0, 6]."""
    scores = torch.tensor([float(judge(ex, ans)) for ex, ans in zip(examples, answers)], dtype=torch.float64)
    if ((scores < 0) | (scores > 6)).any():
        raise ValueError(f"judge scores must lie in [0, 6] (MMHal scale), got {scores.tolist()}")
    return scores
