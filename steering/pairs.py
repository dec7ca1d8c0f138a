"""Contrastive triples (x, y⁺, y⁻), their tokenisation, (merged) input embeddings and provenance hashes.

Design decisions (vs the released code, docs/grains.md §2.4 and §2.11 #9):
- Prompt and response are tokenised separately and joined as ids, so the response boundary is exact.
- VLM inputs are embedded **with** ``pixel_values``: the merged embeddings (image features scattered into the
  image-token slots) are captured where the VLM hands them to its language model, so image tokens carry image
  content in attribution, masking and deltas. The release embedded ids only, so its image tokens were blind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steering.scoring import encode_prompt_response


@dataclass(frozen=True)
class ContrastivePair:
    """One steering example: input ``prompt`` x, ``preferred`` y⁺ and ``dispreferred`` y⁻ responses.

    Attributes:
        pixel_values: image tensor for a VLM (e.g. (1, 3, H, W) for LLaVA), or None for text.
        image_kwargs: extra VLM inputs, e.g. ``{"image_sizes": ...}`` for LLaVA-NeXT.
    """

    prompt: str
    preferred: str
    dispreferred: str
    pixel_values: torch.Tensor | None = None
    image_kwargs: dict[str, Any] = field(default_factory=dict)

    def swapped(self) -> ContrastivePair:
        return ContrastivePair(self.prompt, self.dispreferred, self.preferred, self.pixel_values, self.image_kwargs)


def check_pairs(pairs: Sequence[ContrastivePair]) -> None:
    """Raise ``ValueError`` naming the first pair whose preferred or dispreferred answer is empty or whitespace."""
    for i, pair in enumerate(pairs):
        for name in ("preferred", "dispreferred"):
            value = getattr(pair, name)
            if not value.strip():
                raise ValueError(
                    f"pair {i} has an empty {name} answer ({value!r}; prompt {pair.prompt[:60]!r}): every "
                    "pair needs non-empty preferred and dispreferred answers; fill it in or drop the pair"
                )


def identical_pairs(pairs: Sequence[ContrastivePair]) -> list[int]:
    """Indices of the pairs whose preferred and dispreferred answers are the same text (contrast ≡ 0)."""
    return [i for i, p in enumerate(pairs) if p.preferred == p.dispreferred]


def encode_pair(tokenizer, pair: ContrastivePair) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids of x (n,), y⁺ (m⁺,) and y⁻ (m⁻,)."""
    x, y_pos = encode_prompt_response(tokenizer, pair.prompt, pair.preferred)
    _, y_neg = encode_prompt_response(tokenizer, pair.prompt, pair.dispreferred)
    return x, y_pos, y_neg


class _Captured(Exception):
    pass


def image_token_id(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    return None


@torch.no_grad()
def embed_inputs(model: nn.Module, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 **image_kwargs: Any) -> torch.Tensor:  # fmt: skip
    """Input embeddings (n, d) of ``input_ids`` (n,); with ``pixel_values``, the VLM's merged embeddings.

    The VLM forward is run up to its language model, whose ``inputs_embeds`` argument is captured (then stopped),
    so the merge is exactly the model's own (LLaVA, LLaVA-NeXT).
    """
    emb = model.get_input_embeddings()
    ids = input_ids.to(emb.weight.device)
    if pixel_values is None:
        return emb(ids)
    if model.config.model_type in ("qwen2_5_vl", "qwen2_vl"):
        raise NotImplementedError(
            f"{type(model).__name__}: attribution with pixel_values needs its 3-D (M-RoPE) position ids, which the "
            "padded extraction path does not build yet; LLaVA and LLaVA-NeXT are supported"
        )
    decoder = model.get_decoder()
    captured: dict[str, Any] = {}

    def pre_hook(module, args, kwargs):
        captured.update(kwargs)
        raise _Captured

    handle = decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        model(input_ids=ids[None], pixel_values=pixel_values.to(emb.weight.device), **image_kwargs)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "inputs_embeds" not in captured:
        raise ValueError(f"{type(model).__name__} did not pass inputs_embeds to its language model")
    return captured["inputs_embeds"][0]


def image_token_mask(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """(n,) bool: which positions of ``input_ids`` are image-patch tokens."""
    image_id = image_token_id(model)
    if image_id is None:
        return torch.zeros_like(input_ids, dtype=torch.bool)
    return input_ids == image_id


def tokenizer_hash(tokenizer) -> str:
    """Short sha256 of the tokenizer's vocabulary and class (detects a vector used with another tokenizer)."""
    vocab = sorted(tokenizer.get_vocab().items())
    payload = json.dumps([type(tokenizer).__name__, vocab], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def pairs_hash(pairs: Sequence[ContrastivePair]) -> str:
    """Short sha256 of the steering data (texts and image bytes)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.prompt, p.preferred, p.dispreferred]).encode())
        if p.pixel_values is not None:
            h.update(p.pixel_values.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
