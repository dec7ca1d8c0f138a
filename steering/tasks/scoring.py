"""Log-likelihood of every choice of every multiple-choice example, batched (packed prompts for text).

Design decision: scores are sum log-likelihoods of the answer tokens given the prompt (teacher forcing, no
off-by-one); with an image the prompt is embedded with ``pixel_values`` (the VLM's merged embeddings), then the answer
embeddings follow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmcore.attention_backends import variable_length_attention
from lmcore.packing import pack_groups, pack_rows, packed_logprobs, packing_supported
from lmcore.padding import chunks, forward_padded, pad_batch
from steering.hooks import steers_whole_sequences
from steering.pairs import embed_inputs
from steering.scoring import encode_prompt, encode_prompt_response, response_logprob_from_logits, score_responses
from steering.tasks.side_effects import prompt_logprobs as padded_prompt_logprobs
from steering.tasks.types import MCExample


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


@variable_length_attention()
def score_examples(
    model: nn.Module,
    tokenizer,
    examples: Sequence[MCExample],
    batch_size: int = 16,
    packed: bool = True,
    prompt_logprobs: bool = False,
) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Log-likelihood of every choice of every example, batched across examples; one (n_choices,) tensor each.

    ``packed`` (text only, not under a ``steer`` whose effect depends on position or on the whole sequence, and only
    where ``lmcore.packing.packing_supported``: eager / SDPA attention, no sliding window shorter than a sequence):
    each question's prompt is read once and its choices follow it in the same row (``lmcore.packing``), up to
    ``batch_size`` answers per forward. Otherwise (always with images) every
    (prompt, choice) is its own padded row, ``batch_size`` rows per forward, in order of length (then restored)
    so a batch pads little: on TruthfulQA the answers range from 2 to 40 tokens.

    ``prompt_logprobs`` (text only): also return each example's next-token log-probabilities at every prompt
    position, (T_i, V) (``tasks.side_effects``): read from the packed rows' prompt positions, or from a padded prompt
    forward under the same steering when the rows are not packed.
    """
    if prompt_logprobs and any(ex.pixel_values is not None for ex in examples):
        raise ValueError("prompt_logprobs is for text prompts: an image prompt's tokens need its pixel_values")
    images = any(ex.pixel_values is not None for ex in examples)
    groups = []
    if packed and not images and not steers_whole_sequences(model):
        for ex in examples:
            encoded = [encode_prompt_response(tokenizer, ex.prompt, c) for c in ex.choices]
            groups.append((encoded[0][0], [y for _, y in encoded]))
        longest = max(len(x) + max(len(y) for y in ys) for x, ys in groups)
        if not packing_supported(model, longest):  # a sliding window or a backend without 4-D masks: padded rows
            groups = []
    prompt_lps: list[torch.Tensor] = []
    if groups:
        parts = []
        for idx in pack_rows([len(ex.choices) for ex in examples], batch_size):
            out = packed_logprobs(model, pack_groups([groups[i] for i in idx]), prompt_logprobs)
            parts.append(out[0] if prompt_logprobs else out)
            prompt_lps += out[1] if prompt_logprobs else []
        flat = torch.cat(parts)
    else:
        if prompt_logprobs:
            prompt_lps = padded_prompt_logprobs(model, tokenizer, [ex.prompt for ex in examples], batch_size)
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
            lengths = [len(encode_prompt(tokenizer, p + r)) for p, r in zip(prompts, responses)]
            order = sorted(range(len(prompts)), key=lengths.__getitem__)
            scores = score_responses(model, tokenizer, [prompts[i] for i in order], [responses[i] for i in order],
                                     batch_size=batch_size)  # fmt: skip
            flat = torch.empty_like(scores)
            flat[torch.tensor(order)] = scores
    out, start = [], 0
    for ex in examples:
        out.append(flat[start : start + len(ex.choices)])
        start += len(ex.choices)
    return (out, prompt_lps) if prompt_logprobs else out
