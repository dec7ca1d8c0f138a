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
  shapes, dtypes and values, digested). A call that may fill a KV cache (``use_cache`` not ``False``: generation) is
  never recorded or replayed.
- **Safety over speed**: a forward runs in full and records nothing when its skipped layers, any of their
  sub-modules or the embedding carry a hook (a steering hook below ``first`` would make the recorded prefix a steered
  one), when global hooks exist, when it carries any argument beyond the keyed ones, ``use_cache=False``,
  ``logits_to_keep`` and ``return_dict`` (an allow-list: token types, hidden-state or attention outputs, flash
  sequence lengths all run in full), when the model is in train mode or gradients are on, when the config asks for
  hidden states or attentions, when layers share KV (Gemma 3n / 4), or when its layers do not return a plain tensor
  (the layer contract of transformers ≥ 5). Nested blocks on one model are refused. The model must not change
  between the recording and the replay (no training step in between): the store belongs to one evaluation of one
  model, as in ``sweep``.
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
# the only arguments a re-usable forward may carry: the keyed ones, and ones that act after the decoder layers
_ALLOWED = frozenset({*_KEYED, "use_cache", "logits_to_keep", "return_dict"})
_ACTIVE = "_steering_prefix_reuse_active"


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
    re-usable: any argument beyond those, ``use_cache=False``, ``logits_to_keep`` and ``return_dict`` (embeddings,
    images, a KV cache, token types, hidden-state or attention outputs, …), no ``input_ids``, or ``use_cache`` not
    ``False`` (the forward may fill a KV cache, which skipped layers would leave empty)."""
    given = {k for k, v in kwargs.items() if v is not None}
    if kwargs.get("input_ids") is None or not given <= _ALLOWED or kwargs.get("use_cache") is not False:
        return None
    h = hashlib.blake2b(digest_size=20)
    for name in _KEYED:
        h.update(name.encode())
        try:
            _digest(kwargs.get(name), h)
        except TypeError:
            return None
    return h.hexdigest()


# transformers' output-capturing hooks stay installed after one ``output_hidden_states`` call and do nothing unless a
# forward asks for outputs, which a re-usable forward does not (``_ALLOWED``, ``_reusable_model``)
_INERT_HOOKS = frozenset({"output_capturing_hook"})


def _hooked(modules: list[nn.Module]) -> bool:
    """Whether any of ``modules`` (or any of their sub-modules), or every module (global hooks), has a forward hook
    other than transformers' inert output-capturing ones."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    hooks = (h for top in modules for m in top.modules() for h in [*m._forward_hooks.values(),
                                                                   *m._forward_pre_hooks.values()])  # fmt: skip
    return any(getattr(h, "__name__", None) not in _INERT_HOOKS for h in hooks)


def _reusable_model(model: nn.Module) -> bool:
    """A model whose forwards may be re-used at all: eval mode, no gradients, no outputs of the skipped layers asked
    for by its config, no layer reading another layer's KV (Gemma 3n / 4 share KV across layers)."""
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", lambda: config)()
    asks = any(
        getattr(c, name, False) for c in (config, text) for name in ("output_hidden_states", "output_attentions")
    )
    shared = any(getattr(c, "num_kv_shared_layers", 0) for c in (config, text))
    return not (model.training or torch.is_grad_enabled() or asks or shared)


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
    if getattr(model, _ACTIVE, False):
        raise ValueError("reuse_prefix is already active on this model: nested blocks could record a replayed prefix")
    call: dict[str, Any] = {"key": None, "replay": False}
    watched = [*layers[:first], model.get_input_embeddings()]

    def before_model(module, args, kwargs):
        key = None if args or not _reusable_model(model) or _hooked(watched) else input_key(kwargs)
        call["key"] = None if key is None else (first, key)
        call["replay"] = call["key"] in store.states
        if call["replay"]:
            store.replayed += 1
        else:
            store.full += 1

    def after_model(module, args, kwargs, output):
        call["key"], call["replay"] = None, False  # nothing leaks into a later call of an inner module

    def at_first(module, args, kwargs):
        key = call["key"]
        if key is None:
            return None
        if call["replay"]:
            return (store.states[key].clone(), *args[1:]), kwargs  # a copy: the store survives in-place changes
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
        setattr(model, _ACTIVE, True)
        stack.callback(delattr, model, _ACTIVE)
        stack.callback(model.register_forward_pre_hook(before_model, with_kwargs=True).remove)
        stack.callback(model.register_forward_hook(after_model, with_kwargs=True, always_call=True).remove)
        # first among layer `first`'s pre-hooks, so any other one sees the replayed states
        stack.callback(layers[first].register_forward_pre_hook(at_first, with_kwargs=True, prepend=True).remove)
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
