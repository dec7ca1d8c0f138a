"""The alignment gradient of a path attribution without a double backward: central finite differences.

docs/cap.md §1.4. A path attribution (IG, gradient×input, Expected Gradients) of the gold logit F is, per token t,

    a_t = Σ_k w_k (x − r)_t · ∇_{z_t} F(z_k),    z_k = r + α_k (x − r)

(x the word embeddings, r the reference, α_k per row). For a loss L(a), let g = ∂L/∂a (known only in backward) and
v = g ⊙ (x − r), a fixed input-space direction. Then Σ_t g_t a_t = Σ_k w_k D_v F(z_k), and

    dL/dθ = ∇_θ Σ_k w_k D_v F(z_k) |_(v fixed)  +  Σ_t g_t ḡ_t · ∂(x − r)_t/∂θ,    ḡ = Σ_k w_k ∇_z F(z_k),

with D_v F(z) = [F(z + εv) − F(z − εv)] / (2ε) + O(ε²). Back-propagating that difference with z_k still a function
of x and r also gives the Hessian term through the embedding table (∇_z D_v F ≈ the same difference of ∇_z F), so
every parameter's gradient is covered, the embedding table's included. Cost: one first-order pass for the value
(forward + input gradient, batch m·B) and one first-order forward + backward of batch 2m·B in backward; no
``create_graph``, so fused attention kernels may run and no second-order graph is held.

ε is per row, ε_b = ``step`` · ‖x_b − r_b‖ / ‖v_b‖ (the perturbation is ``step`` times the path length); rows with
v = 0 (no content token, or no loss gradient) contribute nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

ForwardFn = Callable[[Tensor], Tensor]  # inputs_embeds (B', T, d) -> logits (B', C)


@dataclass(frozen=True)
class _Path:
    forward: ForwardFn
    labels: Tensor  # (B,)
    alphas: Tensor  # (m, B)
    weights: Tensor  # (m,)
    params: tuple[Tensor, ...]
    step: float
    chunk_size: int


def _chunks(path: _Path) -> list[slice]:
    m = path.alphas.shape[0]
    return [slice(i, i + path.chunk_size) for i in range(0, m, path.chunk_size)]


def _points(path: _Path, part: slice, embeds: Tensor, reference: Tensor) -> Tensor:
    """z_k = r + α_k (x − r) for the steps in ``part``: (m', B, T, d)."""
    return reference.unsqueeze(0) + path.alphas[part].view(-1, embeds.shape[0], 1, 1) * (embeds - reference)


def _gold_sum(path: _Path, points: Tensor, coefficients: Tensor) -> Tensor:
    """Σ over rows of coefficient · gold logit, for points (n, B, T, d) and coefficients (n, B)."""
    n = points.shape[0]
    with torch.autocast(device_type=points.device.type, enabled=False):
        logits = path.forward(points.flatten(0, 1))
    gold = logits.gather(-1, path.labels.repeat(n).unsqueeze(-1)).squeeze(-1)
    return (coefficients.flatten() * gold).sum()


def _value(path: _Path, embeds: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    """The attribution (B, T) and the weighted mean gradient ḡ (B, T, d), first order only."""
    mean_grad = torch.zeros_like(embeds)
    for part in _chunks(path):
        points = _points(path, part, embeds, reference).detach().requires_grad_(True)
        ones = torch.ones(points.shape[:2], dtype=embeds.dtype, device=embeds.device)
        (grads,) = torch.autograd.grad(_gold_sum(path, points, ones), points)
        mean_grad += (path.weights[part].view(-1, 1, 1, 1) * grads).sum(0)
    return ((embeds - reference) * mean_grad).sum(-1), mean_grad


class _FiniteDifferencePath(torch.autograd.Function):
    """Value: the first-order path attribution. Backward: the finite-difference gradient of the module docstring."""

    @staticmethod
    def forward(ctx, path: _Path, embeds: Tensor, reference: Tensor, *params: Tensor) -> Tensor:
        with torch.enable_grad():
            scores, mean_grad = _value(path, embeds.detach(), reference.detach())
        ctx.path = path
        ctx.save_for_backward(embeds, reference, mean_grad)
        return scores

    @staticmethod
    def backward(ctx, grad_scores: Tensor):
        path: _Path = ctx.path
        embeds, reference, mean_grad = ctx.saved_tensors
        x = embeds.detach().requires_grad_(True)
        r = reference.detach().requires_grad_(True)
        wanted = [x, r, *path.params]
        totals: list[Tensor | None] = [None] * len(wanted)
        with torch.enable_grad():
            diff = x - r
            direction = (grad_scores.unsqueeze(-1) * diff).detach()  # v (B, T, d)
            v_norm = direction.flatten(1).norm(dim=1)
            active = v_norm > 0
            eps = torch.where(active, path.step * diff.detach().flatten(1).norm(dim=1) / v_norm.clamp_min(1e-30), 0.0)
            scale = torch.where(active, 1.0 / (2.0 * eps.clamp_min(1e-30)), 0.0)  # (B,)
            eps_v = eps.view(-1, 1, 1) * direction
            objectives = [lambda: (grad_scores * (diff * mean_grad).sum(-1)).sum()]  # the ḡ · ∂(x − r)/∂θ term
            if bool(active.any()):
                objectives += [lambda part=part: _difference(path, part, x, r, eps_v, scale) for part in _chunks(path)]
            for objective in objectives:  # one chunk's graph at a time
                grads = torch.autograd.grad(objective(), wanted, allow_unused=True)
                totals = [t if g is None else g if t is None else t + g for t, g in zip(totals, grads)]
        return (None, *totals)


def _difference(path: _Path, part: slice, x: Tensor, r: Tensor, eps_v: Tensor, scale: Tensor) -> Tensor:
    """Σ_k w_k Σ_b [F(z_kb + ε_b v_b) − F(z_kb − ε_b v_b)] / (2ε_b) over the steps in ``part``, as one forward."""
    points = _points(path, part, x, r)
    both = torch.cat([points + eps_v, points - eps_v])  # (2m', B, T, d)
    coeff = path.weights[part].view(-1, 1) * scale.view(1, -1)  # (m', B)
    return _gold_sum(path, both, torch.cat([coeff, -coeff]))


def finite_difference_path_attribution(
    forward: ForwardFn,
    embeds: Tensor,
    reference: Tensor,
    labels: Tensor,
    alphas: Tensor,
    weights: Tensor,
    params: Sequence[Tensor],
    step: float = 1e-3,
    chunk_size: int | None = None,
) -> Tensor:
    """Path attribution (B, T) whose gradient (in ``embeds``, ``reference`` and ``params``) is the central difference.

    Args:
        forward: inputs_embeds (n·B, T, d) → logits; must compute the same function in backward as now (callers
            fix the train / eval mode it runs in).
        embeds: x (B, T, d), differentiable in the embedding table.
        reference: r (B, T, d).
        labels: (B,) gold classes.
        alphas: (m, B) path positions; weights: (m,) quadrature weights.
        params: the parameters ``forward`` uses whose gradients are wanted (those with ``requires_grad``).
        step: the finite-difference step relative to the path length (see the module docstring).
        chunk_size: steps per forward in the value pass and per backward pass (memory / chunk); None: all at once.
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    m = alphas.shape[0]
    if alphas.shape != (m, embeds.shape[0]) or weights.shape != (m,):
        raise ValueError(f"alphas must be (m, B) and weights (m,), got {tuple(alphas.shape)}, {tuple(weights.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    path = _Path(forward, labels, alphas.to(embeds), weights.to(embeds), tuple(params), step, chunk_size or m)
    return _FiniteDifferencePath.apply(path, embeds, reference, *path.params)
