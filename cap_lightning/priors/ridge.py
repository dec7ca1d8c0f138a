"""The LIME surrogate: text kernel weights and a weighted ridge regression solved by Cholesky
(docs/cap.md §1.2, step 3–4).

Design decisions:
- Kernel: ``d = 100 · cosine_distance(z, 1)``, ``π = sqrt(exp(−d² / width²))`` (the lime text convention; an
  all-zero mask is at distance 100, as in scikit-learn's cosine distance).
- Ridge with intercept by weighted centering: ``A = Zcᵀ diag(π) Zc + λ I`` is SPD for ``λ > 0``, so
  ``torch.linalg.cholesky_ex`` + ``cholesky_solve`` in float64. If the factorisation fails (λ = 0 with collinear
  masks, or round-off), a jittered retry, then ``torch.linalg.lstsq`` — never a silent NaN.
- The solution equals scikit-learn's ``Ridge(alpha=λ, fit_intercept=True).fit(Z, s, sample_weight=π)``; the
  weighted R² follows its ``score`` (a constant target gives 1 for a perfect fit, else 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RidgeFit:
    """A fitted surrogate: ``s ≈ intercept + Z @ coef``; ``solver`` says which path solved it."""

    coef: Tensor  # (n,) float64
    intercept: float
    r2: float
    solver: str  # "cholesky" | "cholesky+jitter" | "lstsq"


def lime_kernel(masks: Tensor, width: float = 25.0) -> Tensor:
    """LIME text-kernel weights ``(M,)`` of binary masks ``(M, n)`` relative to the all-ones row."""
    if width <= 0:
        raise ValueError(f"kernel width must be > 0, got {width}")
    z = masks.double()
    cos = z.sum(-1) / (z.norm(dim=-1) * z.shape[-1] ** 0.5).clamp_min(1e-12)  # cosine with the all-ones vector
    d = 100.0 * (1.0 - cos)
    return torch.exp(-(d**2) / width**2).sqrt()


def weighted_ridge(masks: Tensor, targets: Tensor, weights: Tensor, lam: float = 1.0) -> RidgeFit:
    """Weighted ridge with an unpenalised intercept; ``masks (M, n)``, ``targets (M,)``, ``weights (M,)``."""
    if lam < 0:
        raise ValueError(f"ridge lambda must be >= 0, got {lam}")
    z, s, w = masks.double(), targets.double(), weights.double()
    if z.ndim != 2 or s.shape != (z.shape[0],) or w.shape != (z.shape[0],):
        raise ValueError(
            f"shapes must be masks (M, n), targets (M,), weights (M,); got {z.shape}, {s.shape}, {w.shape}"
        )
    if not (torch.isfinite(s).all() and torch.isfinite(w).all()):
        raise FloatingPointError("weighted_ridge: targets or weights contain NaN/inf")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weighted_ridge: weights must be >= 0 with a positive sum")
    n = z.shape[1]
    mu_z = (w @ z) / w.sum()  # (n,)
    mu_s = (w @ s) / w.sum()
    zc, sc = z - mu_z, s - mu_s
    a = zc.T @ (w[:, None] * zc) + lam * torch.eye(n, dtype=torch.float64)  # (n, n) SPD for lam > 0
    b = zc.T @ (w * sc)  # (n,)
    coef, solver = None, "cholesky"
    for jitter in (0.0, 1e-10 * max(1.0, float(a.diagonal().abs().max()) if n else 1.0)):
        chol, info = torch.linalg.cholesky_ex(a + jitter * torch.eye(n, dtype=torch.float64))
        if int(info) == 0:
            coef = torch.cholesky_solve(b[:, None], chol)[:, 0]
            solver = "cholesky" if jitter == 0.0 else "cholesky+jitter"
            if torch.isfinite(coef).all():
                break
            coef = None
    if coef is None:
        coef, solver = torch.linalg.lstsq(a, b[:, None], driver="gelsd").solution[:, 0], "lstsq"
    intercept = float(mu_s - mu_z @ coef)
    residual = float((w * (s - intercept - z @ coef) ** 2).sum())
    total = float((w * sc**2).sum())
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual <= 1e-24 else 0.0)
    return RidgeFit(coef=coef, intercept=intercept, r2=r2, solver=solver)
