"""The IG convergence gate: examples whose completeness error exceeds a bound are left out of the vector, and counted.

IG's completeness Σ_i a_i = F(x) − F(x′) holds for the exact integral; the gap of the quadrature says whether the
attributions that chose P and Q are converged. With ``GrainsConfig.max_completeness_error`` set, an example whose
|Σ a − (F(x) − F(x′))| exceeds it (or is not finite: NaN gradients) is dropped from the vector fit; the library
(``fit_vector``) and the Lightning writer both call ``completeness_gate`` on the same per-example errors and record
``gate_record`` in the vector's metadata (``completeness_gate``), so a user sees how many were dropped and which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def check_max_completeness_error(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"max_completeness_error {value} must be a finite number > 0, or None (no gate)")


def completeness_gate(errors: torch.Tensor | Sequence[float], threshold: float | None) -> torch.Tensor:
    """kept (N,) bool: |error| <= ``threshold`` and finite; every example is kept when ``threshold`` is None."""
    check_max_completeness_error(threshold)
    e = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
    if threshold is None:
        return torch.ones(len(e), dtype=torch.bool)
    return torch.isfinite(e) & (e.abs() <= threshold)


def gate_record(
    errors: torch.Tensor | Sequence[float], kept: torch.Tensor, threshold: float, indices: Sequence[int]
) -> dict[str, Any]:
    """What the vector's metadata says about the gate: bound, counts, the dropped examples' indices and errors."""
    e = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
    kept = torch.as_tensor(kept, dtype=torch.bool).reshape(-1)
    idx = [int(i) for i in indices]
    if not len(e) == len(kept) == len(idx):
        raise ValueError(f"{len(e)} errors, {len(kept)} gate decisions and {len(idx)} indices must match")
    dropped = torch.nonzero(~kept)[:, 0].tolist()
    finite = e[torch.isfinite(e)].abs()
    return {
        "max_completeness_error": threshold,
        "n_checked": len(e),
        "n_kept": int(kept.sum()),
        "n_dropped": len(dropped),
        "dropped_indices": [idx[i] for i in dropped],
        "dropped_errors": [round(float(e[i]), 6) if math.isfinite(float(e[i])) else None for i in dropped],
        "mean_abs_error": round(float(finite.mean()), 6) if len(finite) else None,
        "max_abs_error": round(float(finite.max()), 6) if len(finite) else None,
    }


def apply_gate(
    errors: torch.Tensor | None, threshold: float | None, indices: Sequence[int]
) -> tuple[torch.Tensor | None, dict[str, Any] | None]:
    """(kept (N,) bool, metadata record), or (None, None) where the gate does not apply (no bound, or a method without
    IG errors). Raises when every example is dropped: there is nothing left to fit a vector from."""
    if errors is None or threshold is None:
        return None, None
    kept = completeness_gate(errors, threshold)
    if not bool(kept.any()):
        raise ValueError(f"max_completeness_error {threshold}: all {len(kept)} examples exceed it, so no vector can be "
                         "fit; raise ig_steps, try ig_method gausslegendre_squared, or raise the bound (python -m "
                         "steering.attribution_check shows the errors)")  # fmt: skip
    return kept, gate_record(errors, kept, threshold, indices)


def gate_warning(record: dict[str, Any]) -> str:
    """The warning both paths give when the gate dropped examples."""
    return (f"max_completeness_error {record['max_completeness_error']}: dropped {record['n_dropped']} of "
            f"{record['n_checked']} examples from the vector (indices {record['dropped_indices']}, completeness errors "
            f"{record['dropped_errors']}); the vector's metadata records them under completeness_gate")  # fmt: skip
