"""The Pareto front and the choice at a KL budget (steering.pareto, steering.budget): invariants on random grids."""

from __future__ import annotations

import math
import random

import pytest

from steering.budget import check_budgets, choose_at_budget, select_at_budgets
from steering.pareto import dominates, pareto_front

TRIALS = range(200)


def _grid(seed: int, n: int | None = None) -> list[dict]:
    """A base row and ``n`` steered settings; values and KLs are rounded so ties happen."""
    rng = random.Random(seed)
    rows = [{"method": "base", "k": None, "layers": None, "alpha": 0.0, "value": rng.random(), "kl": None}]
    for i in range(n if n is not None else rng.randint(1, 25)):
        rows.append({"method": "m", "k": 1, "layers": [i % 3], "alpha": float(rng.choice([1, 2, 3, 4, 6, 8])),
                     "value": round(rng.random(), 1), "kl": round(rng.random() * 0.2, 2)})  # fmt: skip
    return rows


def _within(rows: list[dict], budget: float) -> list[dict]:
    return [r for r in rows[1:] if r["kl"] <= budget]


@pytest.mark.parametrize("seed", TRIALS)
def test_the_front_is_exactly_the_non_dominated_settings(seed):
    rows = _grid(seed)
    front = pareto_front(rows)
    ids = {id(r) for r in front}
    assert all(r["method"] != "base" for r in front)
    assert not any(dominates(a, b) for a in front for b in front)  # non-dominated
    for r in rows[1:]:  # nothing non-dominated is dropped, nothing dominated is kept
        assert (id(r) in ids) == (not any(dominates(o, r) for o in rows[1:]))
    assert [r["kl"] for r in front] == sorted(r["kl"] for r in front)
    assert [r["value"] for r in front] == sorted(r["value"] for r in front)  # more side effect buys more metric


@pytest.mark.parametrize("seed", TRIALS)
def test_a_setting_with_lower_kl_and_higher_metric_than_all_others_is_kept(seed):
    rows = _grid(seed)
    best = {"method": "m", "k": 1, "layers": [0], "alpha": 1.0, "value": 2.0,
            "kl": min(r["kl"] for r in rows[1:]) / 2}  # fmt: skip
    front = pareto_front([*rows, best])
    assert front == [best]  # it dominates every other setting


@pytest.mark.parametrize("seed", TRIALS)
def test_choose_at_budget_stays_within_it_is_best_and_on_the_front(seed):
    rows = _grid(seed)
    rng = random.Random(seed + 10_000)
    budgets = check_budgets(sorted({round(rng.random() * 0.25, 3) + 1e-4 for _ in range(5)}))
    chosen_values = []
    for budget in budgets:
        chosen = choose_at_budget(rows, budget)
        within = _within(rows, budget)
        if not within:
            assert chosen is None
            continue
        assert chosen["kl"] <= budget  # never beyond the budget
        assert chosen["value"] == max(r["value"] for r in within)  # the dev-best within it
        ties = [r for r in within if r["value"] == chosen["value"]]
        assert chosen["kl"] == min(r["kl"] for r in ties)  # ties: the smaller side effect, then the smaller α
        assert abs(chosen["alpha"]) == min(abs(r["alpha"]) for r in ties if r["kl"] == chosen["kl"])
        assert any(chosen is r for r in pareto_front(rows))
        chosen_values.append(chosen["value"])
    assert chosen_values == sorted(chosen_values)  # a larger budget never gives a worse dev metric


def test_select_at_budgets_covers_every_budget_and_method_and_says_when_nothing_fits():
    sweeps = {"a": _grid(1, 10), "b": _grid(2, 10)}
    records = select_at_budgets(sweeps, [0.1, 1e-6])
    assert [(r["budget"], r["method"]) for r in records] == [(1e-6, "a"), (1e-6, "b"), (0.1, "a"), (0.1, "b")]
    for r in records:
        if r["budget"] == 1e-6:  # below every KL of the grid
            assert r["chosen"] is None and r["min_kl"] == min(x["kl"] for x in sweeps[r["method"]][1:])
        else:
            assert r["chosen"] is choose_at_budget(sweeps[r["method"]], 0.1)


def test_no_budget_takes_the_dev_best_even_without_kl():
    rows = [{"method": "base", "alpha": 0.0, "value": 0.5, "kl": None},
            {"method": "m", "k": 1, "layers": [0], "alpha": 4.0, "value": 0.7, "kl": None},
            {"method": "m", "k": 1, "layers": [0], "alpha": 2.0, "value": 0.7, "kl": None}]  # fmt: skip
    assert choose_at_budget(rows, math.inf) is rows[2]  # tie: the smaller α
    with pytest.raises(ValueError, match="has dev kl None"):
        choose_at_budget(rows, 0.1)
    with pytest.raises(ValueError, match="alpha=4.0 has dev kl None"):
        pareto_front(rows)


@pytest.mark.parametrize("budgets", [[], [0.0], [-0.1, 0.1], [float("nan")], [0.1, 0.1]])
def test_bad_budgets_are_refused_by_value(budgets):
    with pytest.raises(ValueError, match="budgets"):
        check_budgets(budgets)
