"""The integrated-gradients quadrature: points α ∈ [0, 1] and weights for ∫₀¹ g(α) dα from ``steps`` evaluations.

One implementation for the student's differentiable self-attribution (``cap_lightning``) and for GrAInS'
contrastive token attributions (``steering``). The ``riemann_*`` rules and ``gausslegendre`` match captum's
``approximation_parameters`` (the steering tests compare with captum); ``middle`` and ``trapezoid`` are the
``cap_lightning`` spellings of ``riemann_middle`` and ``riemann_trapezoid``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from lmcore.choices import check_choice

Quadrature = Literal[
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "middle", "trapezoid"
]
QUADRATURES: tuple[str, ...] = get_args(Quadrature)


def quadrature_points(steps: int, kind: Quadrature = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Points (steps,) and weights (steps,) summing to 1, float64."""
    check_choice("quadrature", kind, Quadrature)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if kind == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = 0.5 * (x + 1.0), 0.5 * w
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
