"""Multiple-choice examples, their log-likelihood scoring and the per-example metrics every MC task shares.

Design decisions:
- One example type (``MCExample``) serves every likelihood task (TruthfulQA MC1/MC2/binary, ToxiGen, FaithEval,
  SPA-VL preference): unique answer strings are scored once each, and each metric names its true/false index sets,
  so MC1, MC2 and binary of one question cost one scoring pass.
- Metrics: ``mc2`` is the normalised probability mass on the true answers (TruthfulQA's MC2); every other target is
  argmax accuracy (a true answer scores above every false one; MC1 and binary have one true answer).
- Scores are sum log-likelihoods of the answer tokens given the prompt (teacher forcing, no off-by-one); with an
  image the prompt is embedded with ``pixel_values`` (the VLM's merged embeddings), then the answer embeddings follow.
- An example also names its steering pair (preferred, dispreferred answer), so the steering split is built from the
  same rows with the same formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lmcore.packing import pack_groups, pack_rows, packed_logprobs
from lmcore.padding import chunks, forward_padded, pad_batch
from steering.hooks import steers_whole_sequences
from steering.pairs import ContrastivePair, embed_inputs
from steering.scoring import encode_prompt_response, response_logprob_from_logits, score_responses

MASS_METRICS = ("mc2",)


@dataclass(frozen=True)
class MCExample:
    """One question with answer choices.

    Attributes:
        prompt: formatted model input (chat template applied when asked).
        choices: unique answer strings (each scored once).
        targets: metric name → (true indices, false indices) into ``choices``.
        pair: (preferred, dispreferred) indices into ``choices`` used when the example is in the steering split.
        pixel_values: image tensor (1, 3, H, W) for a VLM, or None.
        meta: free-form record (source row, category) kept for reports.
        image_kwargs: extra VLM inputs, e.g. ``{"image_sizes": ...}`` for LLaVA-NeXT.
    """

    prompt: str
    choices: tuple[str, ...]
    targets: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    pair: tuple[int, int]
    pixel_values: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    image_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n < 2:
            raise ValueError(f"an MC example needs at least 2 choices, got {n}: {self.prompt[:60]!r}")
        for name, (true, false) in self.targets.items():
            if not true or not false:
                raise ValueError(f"target {name!r} needs at least one true and one false choice")
            if any(not 0 <= i < n for i in (*true, *false)):
                raise ValueError(f"target {name!r} indexes outside the {n} choices")
        if not all(0 <= i < n for i in self.pair) or self.pair[0] == self.pair[1]:
            raise ValueError(f"pair {self.pair} must be two different indices into the {n} choices")

    def restricted(self, target: str) -> MCExample:
        """The same question with only the choices of ``target`` (e.g. ``binary``: 2 choices), for cheap sweeps."""
        if target not in self.targets:
            raise ValueError(f"target {target!r} is not one of {sorted(self.targets)}")
        true, false = self.targets[target]
        keep = list(dict.fromkeys((*true, *false, *self.pair)))
        new = {i: j for j, i in enumerate(keep)}
        targets = {target: (tuple(new[i] for i in true), tuple(new[i] for i in false))}
        pair = (new[self.pair[0]], new[self.pair[1]])
        choices = tuple(self.choices[i] for i in keep)
        return MCExample(self.prompt, choices, targets, pair, self.pixel_values, self.meta, self.image_kwargs)

    def to_pair(self) -> ContrastivePair:
        good, bad = self.choices[self.pair[0]], self.choices[self.pair[1]]
        return ContrastivePair(self.prompt, good, bad, self.pixel_values, self.image_kwargs)


def choice_metrics(example: MCExample, scores: torch.Tensor) -> dict[str, float]:
    """Per-example metric values from the log-likelihoods ``scores`` (len(choices),) of its choices."""
    out = {}
    for name, (true, false) in example.targets.items():
        s_true, s_false = scores[list(true)].double(), scores[list(false)].double()
        if name in MASS_METRICS:
            p = torch.cat([s_true, s_false]).softmax(0)
            out[name] = float(p[: len(true)].sum())
        else:
            out[name] = float(s_true.max() > s_false.max())
    return out


@torch.no_grad()
def _score_with_images(model, tokenizer, prompts, responses, images, extras, batch_size) -> torch.Tensor:
    """log p(response | prompt, image) per row, via merged embeddings (B, T, d) and a padded forward."""
    emb = model.get_input_embeddings()
    out = []
    for idx in chunks(len(prompts), batch_size):
        rows, masks, ids = [], [], []
        for i in idx:
            x, y = encode_prompt_response(tokenizer, prompts[i], responses[i])
            xe = (
                embed_inputs(model, x, images[i], **extras[i])
                if images[i] is not None
                else emb(x.to(emb.weight.device))
            )
            rows.append(torch.cat([xe, emb(y.to(emb.weight.device))]))
            masks.append(torch.cat([torch.zeros(len(x), dtype=torch.bool), torch.ones(len(y), dtype=torch.bool)]))
            ids.append(torch.cat([x, y]))
        batch = pad_batch(rows, "right")
        logits = forward_padded(model, batch)
        device = logits.device
        resp = pad_batch([m.to(device) for m in masks], "right", pad_value=False).values
        id_batch = pad_batch([t.to(device) for t in ids], "right", pad_value=0).values
        out.append(response_logprob_from_logits(logits, id_batch, resp).cpu())
    return torch.cat(out)


def score_examples(
    model: nn.Module, tokenizer, examples: Sequence[MCExample], batch_size: int = 16, packed: bool = True
) -> list[torch.Tensor]:
    """Log-likelihood of every choice of every example, batched across examples; one (n_choices,) tensor each.

    ``packed`` (text only, and not under a ``steer`` whose effect depends on position or on the whole sequence):
    each question's prompt is read once and its choices follow it in the same row (``lmcore.packing``), up to
    ``batch_size`` answers per forward. Otherwise (always with images) every
    (prompt, choice) is its own padded row, ``batch_size`` rows per forward, in order of length (then restored)
    so a batch pads little: on TruthfulQA the answers range from 2 to 40 tokens.
    """
    images = any(ex.pixel_values is not None for ex in examples)
    if packed and not images and not steers_whole_sequences(model):
        groups = []
        for ex in examples:
            encoded = [encode_prompt_response(tokenizer, ex.prompt, c) for c in ex.choices]
            groups.append((encoded[0][0], [y for _, y in encoded]))
        flat = torch.cat([packed_logprobs(model, pack_groups([groups[i] for i in idx]))
                          for idx in pack_rows([len(ex.choices) for ex in examples], batch_size)])  # fmt: skip
    else:
        prompts, responses, pixels, extras = [], [], [], []
        for ex in examples:
            for choice in ex.choices:
                prompts.append(ex.prompt)
                responses.append(choice)
                pixels.append(ex.pixel_values)
                extras.append(ex.image_kwargs)
        if images:
            flat = _score_with_images(model, tokenizer, prompts, responses, pixels, extras, batch_size)
        else:
            lengths = [len(tokenizer(p + r).input_ids) for p, r in zip(prompts, responses)]
            order = sorted(range(len(prompts)), key=lengths.__getitem__)
            scores = score_responses(model, tokenizer, [prompts[i] for i in order], [responses[i] for i in order],
                                     batch_size=batch_size)  # fmt: skip
            flat = torch.empty_like(scores)
            flat[torch.tensor(order)] = scores
    out, start = [], 0
    for ex in examples:
        out.append(flat[start : start + len(ex.choices)])
        start += len(ex.choices)
    return out


def format_prompt(tokenizer, question: str, chat_template: bool, system: str | None = None) -> str:
    """``Q: {question}\\nA:`` or the tokenizer's chat template with a generation prompt (answers follow it)."""
    if not chat_template:
        return f"Q: {question}\nA:"
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"chat_template=True but the tokenizer {type(tokenizer).__name__} has no chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def format_answer(answer: str, chat_template: bool) -> str:
    """Answers follow ``A:`` after a space; after a chat template's assistant header they start directly."""
    answer = answer.strip()
    return answer if chat_template else " " + answer
