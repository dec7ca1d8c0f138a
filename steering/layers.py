"""Find the decoder layers of a Hugging Face causal LM or VLM, and read/write their outputs structurally.

Design decisions:
- Discovery order: an explicit dotted ``path``; ``model.get_decoder().layers`` (Llama, Qwen2, Mistral, Gemma 3,
  LLaVA, LLaVA-NeXT, Qwen2.5-VL in transformers 5) or ``.h`` (GPT-2 style); then the longest ``ModuleList`` whose
  name ends in ``layers``, ``h`` or ``blocks``. No match is a ``ValueError`` naming the model class.
- The released code matched module *names* (``model.layers.{l}``), which breaks on transformers 5 VLMs where the
  path is ``model.language_model.layers``; we ask the model for its decoder instead.
- Decoder layers return a Tensor in transformers 5 and a tuple in 4.x; ``layer_hidden``/``replace_hidden`` hide that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_LAYER_LIST_NAMES = ("layers", "h", "blocks")


def _get_path(model: nn.Module, path: str) -> nn.Module:
    module: nn.Module = model
    for part in path.split("."):
        if not hasattr(module, part):
            raise ValueError(f"layer path {path!r} not found on {type(model).__name__}: no attribute {part!r}")
        module = getattr(module, part)
    return module


def find_decoder_layers(model: nn.Module, path: str | None = None) -> nn.ModuleList:
    """Return the ``nn.ModuleList`` of decoder layers of ``model`` (optionally at a dotted ``path``).

    Raises:
        ValueError: no decoder-layer list is found; the message names the model class.
    """
    if path is not None:
        found = _get_path(model, path)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            raise ValueError(f"layer path {path!r} on {type(model).__name__} is not a non-empty nn.ModuleList")
        return found
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            decoder = get_decoder()
        except (AttributeError, NotImplementedError, ValueError):
            decoder = None
        for name in _LAYER_LIST_NAMES:
            found = getattr(decoder, name, None) if decoder is not None else None
            if isinstance(found, nn.ModuleList) and len(found) > 0:
                return found
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name.split(".")[-1] in _LAYER_LIST_NAMES
        and "vision" not in name and "visual" not in name
    ]  # fmt: skip
    if not candidates:
        raise ValueError(
            f"no decoder layers found on {type(model).__name__}: expected get_decoder().layers or a ModuleList named "
            f"one of {list(_LAYER_LIST_NAMES)}; pass path='dotted.path.to.layers'"
        )
    return max(candidates, key=lambda c: len(c[1]))[1]


def resolve_layers(model: nn.Module, layers: Sequence[int] | int | None, path: str | None = None) -> list[int]:
    """Normalise layer indices (negative counts from the end; ``None`` = all layers) to sorted non-negative ints.

    Raises:
        ValueError: an index is out of range for the model's layer count, or the list is empty.
    """
    n = len(find_decoder_layers(model, path))
    if layers is None:
        return list(range(n))
    if isinstance(layers, int):
        layers = [layers]
    if len(layers) == 0:
        raise ValueError("layers is empty; pass None for all layers or a list of indices")
    out = []
    for layer in layers:
        if not -n <= int(layer) < n:
            raise ValueError(f"layer {layer} is out of range for {type(model).__name__} with {n} decoder layers")
        out.append(int(layer) % n)
    return sorted(set(out))


def model_hidden_size(model: nn.Module) -> int:
    """Width ``d`` of the residual stream (the input-embedding dimension of the language model)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(emb, nn.Embedding):
        return int(emb.embedding_dim)
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    for key in ("hidden_size", "n_embd", "d_model"):
        if hasattr(text, key):
            return int(getattr(text, key))
    raise ValueError(f"cannot determine the hidden size of {type(model).__name__}")


def layer_hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states (B, T, d) inside a decoder layer's output (a Tensor, or a tuple whose first item is it)."""
    return output if isinstance(output, torch.Tensor) else output[0]


def replace_hidden(output: torch.Tensor | tuple, hidden: torch.Tensor) -> torch.Tensor | tuple:
    """A new output of the same structure as ``output`` with its hidden states replaced by ``hidden``."""
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *output[1:])
