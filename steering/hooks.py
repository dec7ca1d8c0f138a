"""Forward hooks on decoder layers: capture their outputs, or steer them with a ``SteeringVector``.

**``steer`` mutates ``model``'s behaviour while active** (forward hooks; weights untouched, hooks removed in
``finally`` even when the body raises). Design decisions (vs the released code, docs/grains.md §2.6 and §2.11 #10, #12):
- Per-token norm preservation h' = (h + αv)·‖h‖/‖h + αv‖ over d (``dim=-1``), computed in fp32; no hidden ×10.
  ``normalize="legacy_seq_axis"`` reproduces the release (norm over the sequence axis, 10·α·v) for comparison only.
- Capture and steering use the same hook point (the decoder-layer output), so vectors are estimated in the space
  they are applied in. Hooks return a new object of the same structure (Tensor → Tensor, tuple → tuple).
- ``scope`` selects prompt or generated positions from the KV-cache length, so cached decoding equals a full
  recompute. The vector is moved to each layer's device and dtype (``device_map`` sharding, bf16).
- transformers 5 records ``output_hidden_states`` with its own earlier hook, i.e. *before* steering at the steered
  layer; read steered states with ``capture_layer_outputs``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from lmcore.choices import check_choice, choices
from steering.layers import find_decoder_layers, layer_hidden, replace_hidden, resolve_layers
from steering.vectors import SteeringVector

Scope = Literal["all", "prompt", "generated"]
SCOPES = choices(Scope)
Normalize = Literal["per_token", "none", "legacy_seq_axis"]
AlphaUnit = Literal["absolute", "layer_norm"]
NORMALIZE = choices(Normalize)
POSITION_WISE = ("per_token", "none")  # each token steered on its own: shared-prompt packing is exact
_WHOLE_SEQUENCE = "_steering_whole_sequence"  # model attribute: count of active steers that are not position-wise


def steers_whole_sequences(model: nn.Module) -> bool:
    """True while a ``steer`` block is active on ``model`` whose effect on a token depends on its position or on
    the other tokens (``scope`` other than ``all``, ``legacy_seq_axis``): packing sequences would change it."""
    return getattr(model, _WHOLE_SEQUENCE, 0) > 0


@contextmanager
def capture_layer_outputs(
    model: nn.Module, layers: Sequence[int], path: str | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict that each forward fills with layer → detached hidden states (B, T, d) of those layers."""
    modules = find_decoder_layers(model, path)
    store: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args, output):
            store[layer] = layer_hidden(output).detach()

        return hook

    handles = []
    try:
        for layer in resolve_layers(model, layers, path):
            handles.append(modules[layer].register_forward_hook(make_hook(layer)))
        yield store
    finally:
        for h in handles:
            h.remove()


def steered_hidden(
    h: torch.Tensor, v: torch.Tensor, alpha: float, normalize: Normalize = "per_token", eps: float = 1e-8
) -> torch.Tensor:
    """Apply the intervention to hidden states ``h`` (B, T, d) with direction ``v`` (d,); returns a new tensor."""
    h32 = h.float()
    v32 = v.to(device=h.device, dtype=torch.float32)
    if normalize == "legacy_seq_axis":  # released code: S = H + 10αv, rescaled per feature over the sequence axis
        s = h32 + 10.0 * alpha * v32
        s = s * h32.norm(dim=1, keepdim=True) / (s.norm(dim=1, keepdim=True) + eps)
    else:
        s = h32 + alpha * v32
        if normalize == "per_token":
            s = s * (h32.norm(dim=-1, keepdim=True) / s.norm(dim=-1, keepdim=True).clamp_min(eps))
    return s.to(h.dtype)


class _Positions:
    """Tracks absolute token positions of each forward call (cache length before the call), for ``scope``."""

    def __init__(self, prompt_length: int | None) -> None:
        self.given = prompt_length
        self.prompt_length = prompt_length
        self.offset = 0
        self.last: torch.Tensor | None = None  # the input of the last call that started at position 0

    def pre_hook(self, module, args, kwargs):
        cache = kwargs.get("past_key_values")
        self.offset = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if self.offset > 0:
            return
        x = kwargs.get("input_ids")
        x = kwargs.get("inputs_embeds") if x is None else x
        x = args[0] if x is None and args else x
        # a call from position 0 starts a new sequence (its prompt) unless it extends the last one (generation
        # without a KV cache re-reads the whole sequence at every step)
        last = self.last
        extends = (x is not None and last is not None and x.shape[0] == last.shape[0]
                   and x.shape[1] > last.shape[1] and torch.equal(x[:, : last.shape[1]], last))  # fmt: skip
        if not extends:
            self.prompt_length = self.given
        self.last = None if x is None else x.detach()

    def mask(self, T: int, device: torch.device, scope: Scope) -> torch.Tensor:
        """(T,) bool: which positions of the current call are steered."""
        if self.prompt_length is None:
            self.prompt_length = self.offset + T  # the first call inside the block is the prompt
        pos = torch.arange(self.offset, self.offset + T, device=device)
        return pos < self.prompt_length if scope == "prompt" else pos >= self.prompt_length


def _steer_hook(v: torch.Tensor, alpha: float, normalize: Normalize, scope: Scope, positions: _Positions):
    cache: dict[tuple, torch.Tensor] = {}

    def hook(module, args, output):
        if alpha == 0:
            return output  # exact no-op
        h = layer_hidden(output)  # (B, T, d)
        key = (h.device, h.dtype)
        if key not in cache:
            cache[key] = v.to(device=h.device, dtype=h.dtype)
        new = steered_hidden(h, cache[key], alpha, normalize)
        if scope != "all":
            keep = positions.mask(h.shape[1], h.device, scope)[None, :, None]  # (1, T, 1)
            new = torch.where(keep, new, h)
        return replace_hidden(output, new)

    return hook


def alpha_scales(vector: SteeringVector, layers: Sequence[int], alpha_unit: AlphaUnit) -> dict[int, float]:
    """What α is multiplied by at each layer: 1, or the layer's median hidden-state norm (``layer_norm``);
    ``ValueError`` naming the layers without a stored norm."""
    if alpha_unit == "absolute":
        return dict.fromkeys(layers, 1.0)
    stored = vector.metadata.get("layer_norms") or {}
    missing = [layer for layer in layers if str(layer) not in stored]
    if missing:
        raise ValueError(
            f"alpha_unit='layer_norm' needs the vector's median layer norms, and layers {missing} have none: add them "
            "with steering.layer_norms.with_layer_norms(vector, median_layer_norms(model, tokenizer, prompts, "
            "vector.layers)), or use alpha_unit='absolute'"
        )
    return {layer: float(stored[str(layer)]) for layer in layers}


@contextmanager
def steer(
    model: nn.Module,
    vector: SteeringVector,
    alpha: float,
    layers: Sequence[int] | int | None = None,
    scope: Scope = "all",
    preserve_norm: bool = True,
    normalize: Normalize | None = None,
    prompt_length: int | None = None,
    path: str | None = None,
    alpha_unit: AlphaUnit = "absolute",
) -> Iterator[None]:
    """Add ``alpha · v_l`` to the output of each steered decoder layer ``l`` while the block runs.

    Args:
        model: an HF causal LM / VLM (or any model ``find_decoder_layers`` understands).
        vector: per-layer directions; must match the model's hidden size and layer count.
        alpha: strength λ (0 is an exact no-op; negative steers away).
        layers: subset of ``vector.layers`` to steer (negative indices allowed); ``None`` = all of them.
        scope: ``all`` positions, only the ``prompt``, or only ``generated`` tokens.
        preserve_norm: rescale each token to its original L2 norm (``normalize="per_token"``); False = ``none``.
        normalize: overrides ``preserve_norm``: ``per_token`` | ``none`` | ``legacy_seq_axis`` (released code).
        prompt_length: number of prompt tokens for ``scope``; default = the length of the first forward call of
            each sequence (a forward with an empty KV cache starts a new one, e.g. a second ``generate()``).
        path: dotted path of the decoder-layer list, if discovery needs help.
        alpha_unit: ``absolute`` (α · v as given) or ``layer_norm`` (α in units of each layer's median hidden-state
            norm, read from the vector's ``layer_norms`` metadata: ``steering.layer_norms``), so one α is the same
            relative push at every layer.
    """
    if not math.isfinite(float(alpha)):
        raise ValueError(f"alpha {alpha} must be a finite number: a NaN or infinite strength turns every steered "
                         "hidden state into NaN; pass a real number (e.g. 4.0, or 0 for no steering)")  # fmt: skip
    check_choice("scope", scope, Scope)
    check_choice("alpha_unit", alpha_unit, AlphaUnit)
    norm = normalize if normalize is not None else ("per_token" if preserve_norm else "none")
    check_choice("normalize", norm, Normalize)
    vector.check_compatible(model)
    chosen = vector.layers if layers is None else resolve_layers(model, layers, path)
    missing = [layer for layer in chosen if layer not in vector.vectors]
    if missing:
        raise ValueError(f"layers {missing} have no vector; the steering vector covers layers {vector.layers}")
    scale = alpha_scales(vector, chosen, alpha_unit)
    modules = find_decoder_layers(model, path)
    positions = _Positions(prompt_length)
    handles = []
    whole_sequence = scope != "all" or norm not in POSITION_WISE
    try:
        if whole_sequence:
            setattr(model, _WHOLE_SEQUENCE, getattr(model, _WHOLE_SEQUENCE, 0) + 1)
        if scope != "all":
            decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
            handles.append(decoder.register_forward_pre_hook(positions.pre_hook, with_kwargs=True))
        for layer in chosen:
            hook = _steer_hook(vector.vectors[layer], float(alpha) * scale[layer], norm, scope, positions)
            handles.append(modules[layer].register_forward_hook(hook))
        yield
    finally:
        if whole_sequence:
            setattr(model, _WHOLE_SEQUENCE, getattr(model, _WHOLE_SEQUENCE) - 1)
        for h in handles:
            h.remove()
