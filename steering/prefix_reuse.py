"""Re-using the unsteered layers of repeated forwards: a steering sweep re-scores the same inputs at many α.

Design decisions (docs/grains.md §6.12):
- Steering hooks sit on the steered layers only, so when the same inputs are scored again under another α (or
  another vector over the same layers), every decoder layer below the first steered one computes exactly what it
  computed before. ``reuse_prefix(model, store, first)`` records the hidden states entering layer ``first`` on the
  first forward of each input, and on every later forward of the same input skips layers ``0 .. first − 1`` (they
  return their input unchanged) and feeds the recorded states to layer ``first``. Scores are unchanged up to
  floating-point summation order (exactly equal on CPU in the tests); the work saved is ``first / n_layers`` of the
  decoder stack per repeated forward.
- **An input** is what the outer model is called with: ``input_ids``, ``attention_mask`` and ``position_ids`` (their
  shapes, dtypes and values, digested). A call with ``inputs_embeds``, ``pixel_values`` or a KV cache, or one that may
  fill a cache (``use_cache`` not ``False``: generation), is never recorded or replayed: it runs in full.
- **Safety over speed**: a forward whose skipped layers carry any hook (a steering hook below ``first`` would make
  the recorded prefix a steered one), or whose layers do not return a plain tensor (the layer contract of
  transformers ≥ 5), runs in full and records nothing. The model must not change between the recording and the
  replay (no training step in between): the store belongs to one evaluation of one model, as in ``sweep``.
- Memory: one ``(B, T, d)`` tensor per distinct input and first layer, on the model's device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from steering.layers import find_decoder_layers

_KEYED = ("input_ids", "attention_mask", "position_ids")
_FULL_ONLY = ("inputs_embeds", "pixel_values", "past_key_values")


def _digest(value: Any, h) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    elif value is None:
        h.update(b"none")
    else:
        raise TypeError(f"cannot key a forward on a {type(value).__name__}")


def input_key(kwargs: Mapping[str, Any]) -> str | None:
    """Digest of a forward's ``input_ids``, ``attention_mask`` and ``position_ids``; None for a forward that is not
    re-usable (embeddings, images or a KV cache given, no ``input_ids``, or ``use_cache`` not ``False``)."""
    if kwargs.get("input_ids") is None or any(kwargs.get(k) is not None for k in _FULL_ONLY):
        return None
    if kwargs.get("use_cache") is not False:  # it may fill a KV cache, which skipped layers would leave empty
        return None
    h = hashlib.blake2b(digest_size=20)
    for name in _KEYED:
        h.update(name.encode())
        try:
            _digest(kwargs.get(name), h)
        except TypeError:
            return None
    return h.hexdigest()


class PrefixStore:
    """Recorded hidden states entering decoder layer ``first``, per input, and counts of forwards that ran in
    full (``recorded`` / ``full``) or skipped the prefix (``replayed``)."""

    def __init__(self) -> None:
        self.states: dict[tuple[int, str], torch.Tensor] = {}
        self.recorded = self.replayed = self.full = 0

    def __len__(self) -> int:
        return len(self.states)


@contextmanager
def reuse_prefix(model: nn.Module, store: PrefixStore, first: int, path: str | None = None) -> Iterator[PrefixStore]:
    """While inside, forwards of ``model`` record (first time) or skip (again) decoder layers ``0 .. first − 1``.

    Args:
        model: an HF causal LM (the outer model, called with keyword arguments, as the scorers here do).
        store: where the states live; share it across the α of one layer group (and across groups: keys hold
            ``first``).
        first: the first steered layer (0 reuses nothing; negative indices count from the end).
        path: dotted path of the decoder-layer list, if discovery needs help.
    """
    layers = find_decoder_layers(model, path)
    n = len(layers)
    if not -n <= first < n:
        raise ValueError(f"first layer {first} is out of range for a model with {n} decoder layers")
    first %= n
    if first == 0:
        yield store
        return
    call: dict[str, Any] = {"key": None, "replay": False}

    def before_model(module, args, kwargs):
        key = None if args else input_key(kwargs)
        hooked = any(layers[i]._forward_hooks or layers[i]._forward_pre_hooks for i in range(first))
        call["key"] = None if hooked or key is None else (first, key)
        call["replay"] = call["key"] in store.states
        if call["replay"]:
            store.replayed += 1
        else:
            store.full += 1

    def at_first(module, args, kwargs):
        key = call["key"]
        if key is None:
            return None
        if call["replay"]:
            return (store.states[key], *args[1:]), kwargs
        if isinstance(args[0], torch.Tensor) and key not in store.states:
            store.states[key] = args[0].detach().clone()  # safe from any in-place change by later layers
            store.recorded += 1
        return None

    def skipping(layer: nn.Module):
        real = layer.forward

        def forward(*args, **kwargs):
            if call["replay"]:
                return args[0] if args else kwargs["hidden_states"]
            out = real(*args, **kwargs)
            if not isinstance(out, torch.Tensor):  # not the tensor-in, tensor-out layer contract: never skip
                call["key"] = None
            return out

        return forward

    with ExitStack() as stack:
        stack.callback(model.register_forward_pre_hook(before_model, with_kwargs=True).remove)
        stack.callback(layers[first].register_forward_pre_hook(at_first, with_kwargs=True).remove)
        for i in range(first):
            stack.callback(_restore_forward, layers[i], layers[i].__dict__.get("forward"))
            layers[i].forward = skipping(layers[i])
        yield store


def _restore_forward(layer: nn.Module, previous) -> None:
    """Put back the layer's own ``forward`` attribute (e.g. one accelerate installed), or the class's."""
    if previous is None:
        del layer.forward
    else:
        layer.forward = previous
