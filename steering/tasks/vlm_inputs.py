"""Turn (image, prompt) into what the steering pipeline consumes: a prompt whose image tokens are already expanded,
``pixel_values`` and extra image inputs, using the model's own processor.

Design decision: the pipeline tokenises prompts itself (exact prompt/response boundary), so the processor's
expansion of ``<image>`` into N image tokens is decoded back into the prompt string (special tokens kept, leading
BOS dropped, since tokenising adds it again) and checked to re-tokenise to the same ids.
"""

from __future__ import annotations

from typing import Any


def load_processor(model_path: str):
    from transformers import AutoProcessor

    from lmcore.models import resolve_model_path

    return AutoProcessor.from_pretrained(resolve_model_path(model_path))


def image_inputs(processor, image, prompt: str) -> tuple[str, Any, dict[str, Any]]:
    """(expanded prompt, pixel_values (1, …), extra kwargs such as ``image_sizes``) for one image and prompt."""
    enc = processor(images=image, text=prompt, return_tensors="pt")
    tok = processor.tokenizer
    ids = enc["input_ids"][0].tolist()
    if tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id:
        ids = ids[1:]
    text = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    again = tok(text, add_special_tokens=False).input_ids
    if again != ids:
        raise ValueError(f"{type(processor).__name__}: the expanded prompt does not re-tokenise to the same ids")
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", "pixel_values")}
    return text, enc["pixel_values"], extra
