"""Differentiable self-attribution over the word embeddings: IG, gradient×input, Expected Gradients.

Design decisions (docs/cap.md §1.4, §6):
- Attributions are taken w.r.t. the word-embedding output (``inputs_embeds``); position and type embeddings stay
  as the model adds them. The target is the gold-class logit.
- The baseline replaces *content* tokens only (``pad`` | ``zero`` | ``mask`` embedding); special tokens are kept,
  so the path runs between "this sentence" and "an empty sentence of the same shape".
- ``create_graph=True`` makes the scores differentiable in the model weights (double back-prop), which is what lets
  an alignment loss move attributions. All interpolation steps run as one batched forward.
- Everything is computed in float32 with autocast disabled: second derivatives in bf16 are noise.
- Fused SDPA kernels (flash / memory-efficient, CPU and CUDA) have no double backward, so the attribution forward
  runs under the math SDPA backend.
- ``gradient="finite_difference"`` keeps the value and replaces the double backward by central differences of two
  first-order passes (``finite_difference.py``); there any attention kernel runs. All paths draw the same points.
  ``gradient="one_sided_difference"`` is the one-sided difference: the value pass keeps the parameter gradient at
  each point, so the backward forwards each point once instead of twice (O(ε) instead of O(ε²)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from cap_lightning.finite_difference import finite_difference_path_attribution
from lmcore.choices import check_choice
from lmcore.quadrature import Quadrature, quadrature_points

Method = Literal["ig", "grad_x_input", "expected_gradients"]
Baseline = Literal["pad", "zero", "mask"]
Gradient = Literal["exact", "finite_difference", "one_sided_difference"]
_SCHEMES = {"finite_difference": "central", "one_sided_difference": "one_sided"}
METHODS: tuple[str, ...] = get_args(Method)
BASELINES: tuple[str, ...] = get_args(Baseline)
GRADIENTS: tuple[str, ...] = get_args(Gradient)

ForwardFn = Callable[[Tensor], Tensor]  # inputs_embeds (B', T, d) -> logits (B', C)


def embedding_baseline(
    embeds: Tensor, content_mask: Tensor, kind: Baseline, embedding: torch.nn.Embedding, token_id: int | None
) -> Tensor:
    """Baseline embeddings (B, T, d): content positions replaced, special/pad positions kept.

    Args:
        embeds: ``(B, T, d)`` word embeddings of the input.
        content_mask: ``(B, T)`` bool, True at non-special, non-pad tokens.
        kind: ``pad`` / ``mask`` use that token's embedding (``token_id``), ``zero`` the zero vector.
        embedding: the model's word-embedding table.
        token_id: id of the pad or mask token for ``pad`` / ``mask``.
    """
    check_choice("baseline", kind, Baseline)
    if kind == "zero":
        fill = torch.zeros_like(embeds[0, 0])
    else:
        if token_id is None:
            raise ValueError(f"baseline {kind!r} needs a tokenizer with a {kind} token")
        fill = embedding.weight[token_id].detach().to(embeds.dtype)  # a fixed reference point, not trainable
    return torch.where(content_mask.unsqueeze(-1), fill.expand_as(embeds), embeds)


def _gold(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (B',)


def _ig_part(forward: ForwardFn, embeds: Tensor, baseline: Tensor, labels: Tensor, alphas: Tensor, weights: Tensor,
             create_graph: bool) -> Tensor:  # fmt: skip
    """Σ over the given steps of w·(x − x′)·∇F(x′ + α(x − x′)), per token (B, T).

    The math SDPA backend and fp32 are set here, not only by the caller: a checkpointed chunk is recomputed during
    ``backward()``, outside the caller's context, and must take the same kernels.
    """
    diff = embeds - baseline  # (B, T, d)
    path = baseline.unsqueeze(0) + alphas.view(-1, 1, 1, 1) * diff.unsqueeze(0)  # (m, B, T, d)
    if not path.requires_grad:
        path.requires_grad_(True)
    with torch.autocast(device_type=embeds.device.type, enabled=False), sdpa_kernel(SDPBackend.MATH):
        logits = forward(path.flatten(0, 1))  # (m·B, C)
    gold = _gold(logits, labels.repeat(len(alphas)))
    (grads,) = torch.autograd.grad(gold.sum(), path, create_graph=create_graph)  # (m, B, T, d)
    mean_grad = (weights.view(-1, 1, 1, 1) * grads).sum(0)  # (B, T, d)
    return (diff * mean_grad).sum(-1)


def integrated_gradients(
    forward: ForwardFn,
    embeds: Tensor,
    baseline: Tensor,
    labels: Tensor,
    steps: int = 8,
    quadrature: Quadrature = "middle",
    create_graph: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """IG of the gold logit along the straight path baseline → embeds; returns per-token scores (B, T).

    With ``chunk_size=None`` all ``steps`` interpolations run in one forward of batch ``steps·B``. With a chunk
    size, the steps run ``chunk_size`` at a time; under ``create_graph`` each chunk is activation-checkpointed, so
    the double backward holds one chunk's graph at a time (memory / chunks, at the cost of recomputing each
    chunk's forward and first backward). Completeness: ``scores.sum(-1) ≈ F(embeds) − F(baseline)``.
    """
    alphas, weights = (t.float() for t in quadrature_points(steps, quadrature))
    alphas, weights = alphas.to(embeds), weights.to(embeds)
    if chunk_size is None or chunk_size >= steps:
        return _ig_part(forward, embeds, baseline, labels, alphas, weights, create_graph)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    total = torch.zeros(embeds.shape[:2], dtype=embeds.dtype, device=embeds.device)
    for i in range(0, steps, chunk_size):
        part = (forward, embeds, baseline, labels, alphas[i : i + chunk_size], weights[i : i + chunk_size])
        if create_graph:
            total = total + checkpoint(_ig_part, *part, True, use_reentrant=False)
        else:
            total = total + _ig_part(*part, False)
    return total


def gradient_x_input(
    forward: ForwardFn, embeds: Tensor, baseline: Tensor, labels: Tensor, create_graph: bool = True
) -> Tensor:
    """(x − x′)·∇F(x) per token (B, T): IG with one right-endpoint step, one forward."""
    x = embeds if embeds.requires_grad else embeds.detach().requires_grad_(True)
    gold = _gold(forward(x), labels)
    (grad,) = torch.autograd.grad(gold.sum(), x, create_graph=create_graph)
    return ((embeds - baseline) * grad).sum(-1)


def expected_gradients(
    forward: ForwardFn,
    embeds: Tensor,
    baseline: Tensor,
    labels: Tensor,
    content_mask: Tensor,
    create_graph: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Expected Gradients with one sample per input (Erion et al.): reference = another example of the batch.

    Each row's reference is the word embeddings of a randomly chosen other row at the positions where both are
    content tokens (the ``baseline`` elsewhere), and α ~ U(0, 1) per row. With a batch of one, the reference is
    ``baseline``. Cost: one forward + double backward.
    """
    reference, alpha = expected_gradients_reference(embeds, baseline, content_mask, generator)
    point = reference + alpha.view(-1, 1, 1) * (embeds - reference)
    gold = _gold(forward(point), labels)
    (grad,) = torch.autograd.grad(gold.sum(), point, create_graph=create_graph)
    return ((embeds - reference) * grad).sum(-1)


def expected_gradients_reference(
    embeds: Tensor, baseline: Tensor, content_mask: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Expected Gradients' reference (B, T, d) and α (B,), as in ``expected_gradients`` (``randint``, then ``rand``)."""
    B = embeds.shape[0]
    if B > 1:
        shift = int(torch.randint(1, B, (1,), generator=generator))
        other = torch.roll(torch.arange(B), shift)
        both = content_mask & content_mask[other]
        reference = torch.where(both.unsqueeze(-1), embeds[other].detach(), baseline)
    else:
        reference = baseline
    return reference, torch.rand(B, generator=generator).to(embeds)


def path_points(
    method: Method, embeds: Tensor, baseline: Tensor, content_mask: Tensor, steps: int, quadrature: Quadrature
) -> tuple[Tensor, Tensor, Tensor]:
    """A method as a path attribution: reference r (B, T, d), α (m, B) and weights (m,), with
    ``a_t = Σ_k w_k (x − r)_t · ∇F(r + α_k (x − r))_t`` (IG: the quadrature; gradient×input: α = 1; EG: a draw)."""
    B = embeds.shape[0]
    if method == "ig":
        alphas, weights = (t.to(embeds) for t in quadrature_points(steps, quadrature))
        return baseline, alphas.view(-1, 1).expand(-1, B), weights
    if method == "grad_x_input":
        return baseline, embeds.new_ones(1, B), embeds.new_ones(1)
    reference, alpha = expected_gradients_reference(embeds, baseline, content_mask)
    return reference, alpha.view(1, B), embeds.new_ones(1)


def _in_mode(model, training: bool, forward: ForwardFn) -> ForwardFn:
    """``forward`` run in the train / eval mode given now, whatever the model's mode when it is called: a
    finite-difference backward, and the recomputation of a checkpointed IG chunk, call it during ``backward()``,
    after ``CapModule.attribute`` has restored train mode."""

    def run(inputs_embeds: Tensor) -> Tensor:
        was = model.training
        if was != training:
            model.train(training)
        try:
            return forward(inputs_embeds)
        finally:
            if was != training:
                model.train(was)

    return run


def classifier_forward(model, input_ids: Tensor, attention_mask: Tensor) -> ForwardFn:
    """A ``ForwardFn`` for an HF sequence classifier that runs on ``input_ids`` with swapped-in embeddings.

    The word-embedding output is replaced by a forward hook (as captum's layer attribution does), so the model
    still sees ``input_ids``: decoder-only classifiers (Llama, SmolLM2) then pool the last *real* token, which they
    cannot find from ``inputs_embeds`` alone. Masks and ids are repeated for batched interpolation steps.
    """

    def forward(inputs_embeds: Tensor) -> Tensor:
        reps = inputs_embeds.shape[0] // input_ids.shape[0]
        handle = model.get_input_embeddings().register_forward_hook(lambda module, args, out: inputs_embeds)
        try:
            return model(input_ids=input_ids.repeat(reps, 1), attention_mask=attention_mask.repeat(reps, 1)).logits
        finally:
            handle.remove()

    return forward


def _path_inputs(
    model, input_ids: Tensor, attention_mask: Tensor, content_mask: Tensor, baseline: Baseline, token_id: int | None
) -> tuple[Tensor, Tensor, ForwardFn]:
    """The word embeddings x (B, T, d, float32, differentiable in the table), the baseline r and the forward on
    swapped-in embeddings, in the model's current train / eval mode: what every path attribution here starts from.
    Call it with autocast off."""
    embedding = model.get_input_embeddings()
    embeds = embedding(input_ids).float()
    base = embedding_baseline(embeds, content_mask, baseline, embedding, token_id)
    return embeds, base, _in_mode(model, model.training, classifier_forward(model, input_ids, attention_mask))


@torch.no_grad()
def endpoint_gap(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    content_mask: Tensor,
    baseline: Baseline = "pad",
    baseline_token_id: int | None = None,
) -> Tensor:
    """F(x) − F(r) of the gold logit per row (B,), r the ``baseline`` of ``self_attribution``: what its IG (and
    gradient×input) would sum to if complete. ``|scores.sum(-1) − gap| / |gap|`` is the relative completeness error
    that measures the quadrature (fewer steps at equal accuracy)."""
    with torch.autocast(device_type=input_ids.device.type, enabled=False):
        embeds, base, forward = _path_inputs(
            model, input_ids, attention_mask, content_mask, baseline, baseline_token_id
        )
        at_x, at_base = _gold(forward(torch.cat([embeds, base])), labels.repeat(2)).view(2, -1)
    return at_x - at_base


def self_attribution(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    content_mask: Tensor,
    method: Method = "ig",
    steps: int = 8,
    baseline: Baseline = "pad",
    baseline_token_id: int | None = None,
    quadrature: Quadrature = "middle",
    create_graph: bool = True,
    chunk_size: int | None = None,
    gradient: Gradient = "exact",
    fd_step: float = 1e-3,
) -> Tensor:
    """The classifier's own attribution of the gold logit per token (B, T), zero off content tokens.

    ``gradient`` picks how the scores differentiate in the weights under ``create_graph``: ``exact`` (double
    backward), ``finite_difference`` (same value; the gradient by central differences with relative step
    ``fd_step``, ``finite_difference.py``) or ``one_sided_difference`` (one-sided differences, one forward per point
    fewer). ``chunk_size`` bounds the steps per pass in all.
    """
    check_choice("attribution method", method, Method)
    check_choice("attribution gradient", gradient, Gradient)
    path = (model, input_ids, attention_mask, content_mask, baseline, baseline_token_id)
    if create_graph and gradient in _SCHEMES:
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            embeds, base, forward = _path_inputs(*path)
            reference, alphas, weights = path_points(method, embeds, base, content_mask, steps, quadrature)
            params = [p for p in model.parameters() if p.requires_grad]
            scores = finite_difference_path_attribution(
                forward, embeds, reference, labels, alphas, weights, params, fd_step, chunk_size, _SCHEMES[gradient]
            )
        return scores * content_mask
    with torch.autocast(device_type=input_ids.device.type, enabled=False), sdpa_kernel(SDPBackend.MATH):
        embeds, base, forward = _path_inputs(*path)
        if method == "ig":
            scores = integrated_gradients(forward, embeds, base, labels, steps, quadrature, create_graph, chunk_size)
        elif method == "grad_x_input":
            scores = gradient_x_input(forward, embeds, base, labels, create_graph)
        else:
            scores = expected_gradients(forward, embeds, base, labels, content_mask, create_graph)
    return scores * content_mask
