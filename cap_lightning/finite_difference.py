"""The alignment gradient of a path attribution without a double backward: finite differences, central or one-sided.

docs/cap.md §1.4. A path attribution (IG, gradient×input, Expected Gradients) of the gold logit F is, per token t,

    a_t = Σ_k w_k (x − r)_t · ∇_{z_t} F(z_k),    z_k = r + α_k (x − r)

(x the word embeddings, r the reference, α_k per row). For a loss L(a), let g = ∂L/∂a (known only in backward) and
v = g ⊙ (x − r), a fixed input-space direction. Then Σ_t g_t a_t = Σ_k w_k D_v F(z_k), and

    dL/dθ = ∇_θ Σ_k w_k D_v F(z_k) |_(v fixed)  +  Σ_t g_t ḡ_t · ∂(x − r)_t/∂θ,    ḡ = Σ_k w_k ∇_z F(z_k).

Two schemes for the directional derivative, each back-propagated with z_k still a function of x and r (which also
gives the Hessian term through the embedding table, ∇_z D_v F ≈ the same difference of ∇_z F), so every parameter's
gradient is covered, the embedding table's included:

- ``central``: D_v F(z) = [F(z + εv) − F(z − εv)] / (2ε) + O(ε²). Value pass: forward + input gradient of m·B rows;
  backward: forward + full backward of 2m·B rows. ε is per row, ε_b = ``step`` · ‖x_b − r_b‖ / ‖v_b‖.
- ``one_sided``: D_v F(z) = [F(z + εv) − F(z)] / ε + O(ε). The value pass already runs at z: it also takes the
  parameter gradient there (a full backward instead of an input-only one) and keeps it, so the backward forwards
  only z + εv: m·B rows instead of 2m·B, about 6 forward-equivalents per point instead of 8. Because the kept
  gradient is a sum over rows, ε is one number for the batch, ε = ``step`` · ‖x − r‖ / ‖v‖ (Frobenius norms); a row
  with v_b = 0 is forwarded at its own z again and cancels. Memory: one parameter-sized gradient more.

No ``create_graph`` in either, so fused attention kernels may run and no second-order graph is held. Rows with
v = 0 everywhere (no content token, or no loss gradient) skip the backward's forwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lmcore.choices import check_choice

ForwardFn = Callable[[Tensor], Tensor]  # inputs_embeds (B', T, d) -> logits (B', C)
Scheme = Literal["central", "one_sided"]


@dataclass(frozen=True)
class _Path:
    forward: ForwardFn
    labels: Tensor  # (B,)
    alphas: Tensor  # (m, B)
    weights: Tensor  # (m,)
    params: tuple[Tensor, ...]
    step: float
    chunk_size: int
    scheme: Scheme
    keep_base: bool  # one-sided with a backward to come: keep the parameter gradient at z from the value pass


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


@dataclass
class _Value:
    """What the value pass leaves for the backward: ḡ = Σ_k w_k ∇F(z_k) (B, T, d); for the one-sided scheme also
    Σ_k w_k α_k ∇F(z_k) (B, T, d) and the parameter gradient ∇_θ Σ_k w_k Σ_b F(z_kb)."""

    mean_grad: Tensor
    along: Tensor | None = None
    params: list[Tensor] | None = None


def _value(path: _Path, embeds: Tensor, reference: Tensor) -> tuple[Tensor, _Value]:
    """The attribution (B, T) and the first-order quantities of the value pass (one chunk of steps at a time)."""
    out = _Value(torch.zeros_like(embeds))
    if path.keep_base:
        out.along, out.params = torch.zeros_like(embeds), [torch.zeros_like(p) for p in path.params]
    for part in _chunks(path):
        points = _points(path, part, embeds, reference).detach().requires_grad_(True)
        weights = path.weights[part].view(-1, 1).expand(-1, embeds.shape[0])  # (m', B)
        wanted = [points, *path.params] if path.keep_base else [points]
        grads = torch.autograd.grad(_gold_sum(path, points, weights), wanted, allow_unused=True)
        out.mean_grad += grads[0].sum(0)
        if path.keep_base:
            out.along += (path.alphas[part].view(*grads[0].shape[:2], 1, 1) * grads[0]).sum(0)
            for total, grad in zip(out.params, grads[1:]):
                if grad is not None:
                    total += grad
    return ((embeds - reference) * out.mean_grad).sum(-1), out


class _FiniteDifferencePath(torch.autograd.Function):
    """Value: the first-order path attribution. Backward: the finite-difference gradient of the module docstring."""

    @staticmethod
    def forward(ctx, path: _Path, embeds: Tensor, reference: Tensor, *params: Tensor) -> Tensor:
        with torch.enable_grad():
            scores, value = _value(path, embeds.detach(), reference.detach())
        ctx.path, ctx.value = path, value
        ctx.save_for_backward(embeds, reference)
        return scores

    @staticmethod
    def backward(ctx, grad_scores: Tensor):
        path: _Path = ctx.path
        value: _Value = ctx.value
        embeds, reference = ctx.saved_tensors
        x = embeds.detach().requires_grad_(True)
        r = reference.detach().requires_grad_(True)
        wanted = [x, r, *path.params]
        totals: list[Tensor | None] = [None] * len(wanted)
        with torch.enable_grad():
            diff = x - r
            direction = (grad_scores.unsqueeze(-1) * diff).detach()  # v (B, T, d)
            objectives = [lambda: (grad_scores * (diff * value.mean_grad).sum(-1)).sum()]  # ḡ · ∂(x − r)/∂θ
            if path.scheme == "central":
                objectives += _central(path, x, r, diff.detach(), direction)
                base: list[Tensor] = []
            else:
                objectives, base = _one_sided(path, x, r, diff.detach(), direction, value, objectives)
            for objective in objectives:  # one chunk's graph at a time
                grads = torch.autograd.grad(objective(), wanted, allow_unused=True)
                totals = [t if g is None else g if t is None else t + g for t, g in zip(totals, grads)]
        if base:
            totals = [b if t is None else t + b for t, b in zip(totals, base)]
        return (None, *totals)


def _central(path: _Path, x: Tensor, r: Tensor, diff: Tensor, direction: Tensor) -> list:
    """The objectives whose gradient is Σ_k w_k Σ_b [F(z_kb + ε_b v_b) − F(z_kb − ε_b v_b)] / (2ε_b), per chunk."""
    v_norm = direction.flatten(1).norm(dim=1)
    active = v_norm > 0
    if not bool(active.any()):
        return []
    eps = torch.where(active, path.step * diff.flatten(1).norm(dim=1) / v_norm.clamp_min(1e-30), 0.0)
    scale = torch.where(active, 1.0 / (2.0 * eps.clamp_min(1e-30)), 0.0)  # (B,)
    eps_v = eps.view(-1, 1, 1) * direction
    return [lambda part=part: _difference(path, part, x, r, (eps_v, -eps_v), scale) for part in _chunks(path)]


def _one_sided(
    path: _Path, x: Tensor, r: Tensor, diff: Tensor, direction: Tensor, value: _Value, objectives: list
) -> tuple[list, list[Tensor]]:
    """``objectives`` plus those whose gradient is Σ_k w_k Σ_b F(z_kb + ε v_b) / ε, per chunk, and the base term
    −∇ Σ_k w_k F(z_k) / ε (in x, r and the parameters) from the value pass; nothing added when v = 0."""
    if value.along is None or value.params is None:
        raise RuntimeError("the one-sided difference needs the value pass's base gradient: run it with grad enabled")
    v_norm = direction.norm()
    if not bool(v_norm > 0):
        return objectives, []
    eps = path.step * diff.norm() / v_norm
    scale = torch.full((x.shape[0],), 1.0, dtype=x.dtype, device=x.device) / eps
    shifted = [lambda part=part: _difference(path, part, x, r, (eps * direction,), scale) for part in _chunks(path)]
    base = [-value.along / eps, -(value.mean_grad - value.along) / eps, *(-g / eps for g in value.params)]
    return objectives + shifted, base


def _difference(path: _Path, part: slice, x: Tensor, r: Tensor, shifts: tuple[Tensor, ...], scale: Tensor) -> Tensor:
    """Σ_k w_k Σ_b scale_b [F(z_kb + s_1) − F(z_kb + s_2)] over the steps in ``part`` (one shift: F(z_kb + s_1) only),
    as one forward."""
    points = _points(path, part, x, r)
    shifted = torch.cat([points + shift for shift in shifts])  # (n·m', B, T, d)
    coeff = path.weights[part].view(-1, 1) * scale.view(1, -1)  # (m', B)
    signs = [coeff, -coeff][: len(shifts)]
    return _gold_sum(path, shifted, torch.cat(signs))


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
    scheme: Scheme = "central",
) -> Tensor:
    """Path attribution (B, T) whose gradient (in ``embeds``, ``reference`` and ``params``) is a finite difference.

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
        scheme: ``central`` or ``one_sided`` (see the module docstring).
    """
    check_choice("finite-difference scheme", scheme, Scheme)
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    m = alphas.shape[0]
    if alphas.shape != (m, embeds.shape[0]) or weights.shape != (m,):
        raise ValueError(f"alphas must be (m, B) and weights (m,), got {tuple(alphas.shape)}, {tuple(weights.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    differentiable = torch.is_grad_enabled() and (embeds.requires_grad or any(p.requires_grad for p in params))
    keep_base = scheme == "one_sided" and differentiable
    path = _Path(
        forward, labels, alphas.to(embeds), weights.to(embeds), tuple(params), step, chunk_size or m, scheme, keep_base
    )
    return _FiniteDifferencePath.apply(path, embeds, reference, *path.params)
