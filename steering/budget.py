"""Choosing one setting per method at each side-effect budget: the dev-best setting whose dev KL is within it.

Design decisions:
- ``choose_at_budget``: among the steered rows with dev ``kl <= budget``, the highest dev ``value``; ties go to the
  lower dev KL, then the smaller |α|, then grid order. Within one layer group KL grows with α, so the KL tie-break is
  the "smaller α" rule there, and across groups it keeps the choice on the Pareto front (``steering.pareto``): an
  equal-value setting with less side effect is never passed over. None when no setting is within the budget.
- A larger budget only adds candidates, so the chosen dev value never decreases with the budget (tested).
- ``budget = inf`` means no budget: every row is a candidate, KL or not (image tasks measure none).
- Budgets are checked before anything runs: positive, not NaN, distinct; they are used in increasing order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from steering.pareto import SweepRow, check_kl, steered_rows


def check_budgets(budgets: Sequence[float]) -> list[float]:
    """``budgets`` sorted; ``ValueError`` naming a budget that is not > 0 (NaN included) or a repeated one."""
    bad = [b for b in budgets if not b > 0]
    if bad or not budgets:
        raise ValueError(f"KL budgets must be a non-empty list of numbers > 0 (inf: no budget), got {list(budgets)}")
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"KL budgets {list(budgets)} repeat a value")
    return sorted(float(b) for b in budgets)


def choose_at_budget(rows: Sequence[SweepRow], budget: float) -> SweepRow | None:
    """The dev-best steered row with dev KL <= ``budget`` (module docstring), or None when there is none."""
    steered = steered_rows(rows)
    if math.isinf(budget):
        within = steered
    else:
        check_kl(steered)
        within = [r for r in steered if r["kl"] <= budget]
    if not within:
        return None

    def rank(item: tuple[int, SweepRow]) -> tuple:
        i, r = item
        kl = r.get("kl")
        return (r["value"], -(kl if kl is not None else 0.0), -abs(r["alpha"]), -i)

    return max(enumerate(within), key=rank)[1]


def select_at_budgets(sweeps: Mapping[str, Sequence[SweepRow]], budgets: Sequence[float]) -> list[dict[str, Any]]:
    """One record per (budget, method): ``{budget, method, chosen (row or None), min_kl}`` (budgets increasing)."""
    out = []
    for budget in check_budgets(budgets):
        for method, rows in sweeps.items():
            steered = steered_rows(rows)
            kls = [r["kl"] for r in steered if r.get("kl") is not None]
            out.append({"budget": budget, "method": method, "chosen": choose_at_budget(rows, budget),
                        "min_kl": min(kls) if kls else None})  # fmt: skip
    return out
