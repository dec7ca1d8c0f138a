"""The integrated-gradients quadrature: points α ∈ [0, 1] and weights for ∫₀¹ g(α) dα from ``steps`` evaluations.

One implementation for the student's differentiable self-attribution (``cap_lightning``) and for GrAInS'
contrastive token attributions (``steering``). The ``riemann_*`` rules and ``gausslegendre`` match captum's
``approximation_parameters`` (the steering tests compare with captum); ``middle`` and ``trapezoid`` are the
``cap_lightning`` spellings of ``riemann_middle`` and ``riemann_trapezoid``.

``gausslegendre_squared`` places the points densely near α = 0, where a zero-baseline path through an LLM is rough
(SmolLM2-135M: F jumps from −17.5 at α = 0 to −7.2 at α = 0.01). It substitutes α = u²: ∫₀¹ g(α) dα = ∫₀¹ g(u²) 2u du,
and integrates the right side with Gauss–Legendre in u. Points α_j = u_j², weights 2 u_j w_j; with ``steps`` points it
is exact whenever g(u²)·2u is a polynomial in u of degree ≤ 2·steps − 1, i.e. for g(α) = α^(m/2) with m ≤ 2·steps − 2
(half-integer powers included, which Gauss–Legendre in α does not integrate exactly). Not one of captum's rules.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from lmcore.choices import check_choice

Quadrature = Literal[
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "middle",
    "trapezoid",
    "gausslegendre_squared",
]
QUADRATURES: tuple[str, ...] = get_args(Quadrature)


def quadrature_points(steps: int, kind: Quadrature = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Points (steps,) and weights (steps,) summing to 1, float64."""
    check_choice("quadrature", kind, Quadrature)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if kind in ("gausslegendre", "gausslegendre_squared"):
        x, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = 0.5 * (x + 1.0), 0.5 * w
        if kind == "gausslegendre_squared":  # α = u²: dα = 2u du (module docstring)
            alphas, weights = alphas**2, 2.0 * alphas * weights
    elif kind in ("riemann_trapezoid", "trapezoid"):
        if steps == 1:
            alphas, weights = np.ones(1), np.ones(1)
        else:
            alphas = np.linspace(0.0, 1.0, steps)
            weights = np.full(steps, 1.0 / (steps - 1))
            weights[[0, -1]] *= 0.5
    else:
        offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5, "middle": 0.5}[kind]
        alphas = (np.arange(steps) + offset) / steps
        weights = np.full(steps, 1.0 / steps)
    return torch.from_numpy(np.asarray(alphas, dtype=np.float64)), torch.from_numpy(np.asarray(weights, np.float64))
