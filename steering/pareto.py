"""The Pareto front of dev settings: task metric (higher is better) against side effect KL(base ‖ steered) (lower).

Design decisions:
- A setting is a sweep row (``steering.sweep.sweep``): ``value`` (the dev target metric) and ``kl`` (dev KL to the
  base model, nats). Row ``a`` dominates row ``b`` when ``a`` is no worse on both axes and strictly better on one.
- The front is exactly the steered rows no other row dominates (an O(n²) definition, n = one method's grid), sorted
  by KL: it never drops a row that has lower KL and higher metric than everything else, and rows with the same
  (KL, value) are all kept (neither dominates the other).
- A row without a finite KL (image tasks do not measure it) is refused by name: a front needs both axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

SweepRow = Mapping[str, Any]  # {"method", "k", "layers", "alpha", "target", "value", "kl"}


def steered_rows(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """The rows of steered settings (the α = 0 ``base`` row left out)."""
    return [r for r in rows if r["method"] != "base"]


def check_kl(rows: Sequence[SweepRow]) -> None:
    """Raise ``ValueError`` naming the first row whose ``kl`` is missing, negative or not finite."""
    for r in rows:
        kl = r.get("kl")
        if kl is None or not math.isfinite(kl) or kl < 0:
            what = f"{r.get('method')} k={r.get('k')} layers={r.get('layers')} alpha={r.get('alpha')}"
            raise ValueError(f"setting {what} has dev kl {kl!r}; a KL budget needs a finite KL >= 0 (measured on "
                             "text tasks only)")  # fmt: skip


def dominates(a: SweepRow, b: SweepRow) -> bool:
    """``a`` has KL <= and value >= ``b``'s, one of them strictly."""
    return a["kl"] <= b["kl"] and a["value"] >= b["value"] and (a["kl"] < b["kl"] or a["value"] > b["value"])


def pareto_front(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """The non-dominated steered rows, by increasing KL (then decreasing value)."""
    steered = steered_rows(rows)
    check_kl(steered)
    front = [r for r in steered if not any(dominates(o, r) for o in steered)]
    return sorted(front, key=lambda r: (r["kl"], -r["value"]))
