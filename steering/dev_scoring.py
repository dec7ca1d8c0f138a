"""Scoring the dev split for a sweep: the one place that knows the task kind (multiple choice or continuations).

Design decisions:
- ``dev_scores`` takes the steering as a context factory (``lambda: steer(model, vector, alpha)``; None = the base
  model) rather than relying on hooks already active, because a continuation's fluency is scored by the
  **unsteered** model (``tasks.continuations``): the hooks must cover generation and nothing after it.
- Multiple choice (``MCExample``): the mean of ``target`` (``binary``, ``mc1``, ``mc2``, …) over the examples, each
  first restricted to that target's choices (``prepare_dev``), exactly as before this module existed.
- Continuations (``ContinuationExample``, the sentiment task): greedy continuations of the dev prompts under the
  steering (``judged_continuations``: batched, KV cache, ``n_tokens`` tokens), judged by a classifier; the value is
  the mean of ``target`` (``p_positive``, the judge's mean p(positive label), or ``positive_rate``), and the scores
  also carry both judge metrics and the fluency: ``continuation_nll`` (mean per-token NLL of the continuation under
  the base model), ``continuation_ppl`` = exp of that mean (the convention of ``tasks.side_effects``) and
  ``continuation_tokens``. The base model's continuations are scored once per dev split by the caller and reused
  for every method (``sweep(base=...)``): generation is the expensive part.
- Any other example type (open-ended generation with a 0–6 judge, MMHal) or a mix of kinds is refused by name:
  the sweep has no dev metric for it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lmcore.io import json_sha256
from steering.tasks.classifier_judge import Judge
from steering.tasks.continuations import judged_continuations
from steering.tasks.metrics import choice_metrics
from steering.tasks.scoring import score_examples
from steering.tasks.side_effects import prompt_logprobs, side_effects
from steering.tasks.types import ContinuationExample, MCExample

DevKind = Literal["mc", "continuation"]
CONTINUATION_TARGETS = ("p_positive", "positive_rate")  # the first is the default target
FLUENCY = ("continuation_ppl", "continuation_tokens")  # per dev setting, beside the value


@dataclass(frozen=True)
class ContinuationJudging:
    """How continuation tasks are scored on dev: the judge callable (texts -> (N, C) probabilities), the index of
    the label counted as success, the tokens generated per prompt and the prompts per generation batch."""

    judge: Judge
    label: int
    n_tokens: int
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.n_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"n_tokens {self.n_tokens} and batch_size {self.batch_size} must be >= 1")


def dev_kind(examples: Sequence) -> DevKind:
    """``mc`` or ``continuation``; ``ValueError`` naming the types for an empty, mixed or unsupported split."""
    if not examples:
        raise ValueError("the dev split is empty; a sweep needs n_dev >= 1")
    if all(isinstance(ex, MCExample) for ex in examples):
        return "mc"
    if all(isinstance(ex, ContinuationExample) for ex in examples):
        return "continuation"
    kinds = {type(ex).__name__ for ex in examples}
    raise ValueError(f"the dev split holds {sorted(kinds)}: the sweep scores multiple-choice (MCExample) or "
                     "continuation (ContinuationExample, task 'sentiment') examples, one kind at a time")  # fmt: skip


def dev_targets(examples: Sequence) -> list[str]:
    """The metrics a selection can maximise: the MC targets of the first example, or the continuation metrics."""
    if dev_kind(examples) == "continuation":
        return list(CONTINUATION_TARGETS)
    return list(examples[0].targets)


def default_target(examples: Sequence) -> str:
    """``binary`` for MC tasks that have it (else their first target); ``p_positive`` for continuations."""
    targets = dev_targets(examples)
    return "binary" if "binary" in targets else targets[0]


def dev_fingerprint(examples: Sequence) -> str:
    """Hash of everything of the dev examples a score depends on (prompts, choices and targets, or prompts)."""
    if dev_kind(examples) == "continuation":
        return json_sha256([ex.prompt for ex in examples])
    return json_sha256([[ex.prompt, list(ex.choices), sorted(ex.targets.items())] for ex in examples])


def prepare_dev(examples: Sequence, target: str) -> list:
    """The dev examples as scored for ``target`` (MC: restricted to its choices); ``ValueError`` for a target the
    examples do not have."""
    targets = dev_targets(examples)
    if target not in targets:
        raise ValueError(f"target {target!r} is not a target of the dev examples {targets}")
    if dev_kind(examples) == "mc":
        return [ex.restricted(target) for ex in examples]
    return list(examples)


def dev_scores(
    model: nn.Module,
    tokenizer,
    examples: Sequence,
    target: str,
    batch_size: int = 16,
    steering: Callable[[], AbstractContextManager] | None = None,
    judging: ContinuationJudging | None = None,
    base_logprobs: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """``{"value": mean of target}`` over ``examples`` (already ``prepare_dev``-ed) under ``steering()``; for
    continuations also the judge metrics and the fluency (module docstring). ``base_logprobs``: the unsteered
    ``tasks.side_effects.prompt_logprobs`` of the examples' prompts (text only); with them the scores also hold
    ``kl``, the mean over prompts of KL(base ‖ steered) (multiple choice: read from the scorer's own packed rows).

    Raises:
        ValueError: continuation examples without ``judging``.
    """
    prompts = [ex.prompt for ex in examples]
    context = steering if steering is not None else contextlib.nullcontext
    if dev_kind(examples) == "mc":
        with context():
            scores = score_examples(model, tokenizer, examples, batch_size, prompt_logprobs=base_logprobs is not None)
        out = {}
        if base_logprobs is not None:
            scores, steered = scores
            out["kl"] = float(side_effects(tokenizer, prompts, base_logprobs, steered)[0].mean())
        value = sum(choice_metrics(ex, s)[target] for ex, s in zip(examples, scores)) / len(examples)
        return {"value": value, **out}
    if judging is None:
        raise ValueError("continuation examples (task 'sentiment') need a judge to score the dev split: set "
                         "model.init_args.judge_model to an HF classifier folder")  # fmt: skip
    out = judged_continuations(model, tokenizer, prompts, judging.judge, judging.label, judging.n_tokens,
                               judging.batch_size, steering)  # fmt: skip
    means = {name: float(v.mean()) for name, v in out.metrics().items()}
    kl = {}
    if base_logprobs is not None:
        with context():
            steered = prompt_logprobs(model, tokenizer, prompts, batch_size)
        kl["kl"] = float(side_effects(tokenizer, prompts, base_logprobs, steered)[0].mean())
    return {"value": means[target], **{t: means[t] for t in CONTINUATION_TARGETS},
            "continuation_nll": means["continuation_nll"], "continuation_ppl": math.exp(means["continuation_nll"]),
            "continuation_tokens": means["continuation_tokens"], **kl}  # fmt: skip
