"""The random-direction null (steering.null_directions): draws keep the control's norms and metadata and are
independent; the pooled differences and rank p follow their definitions on records built by hand."""

from __future__ import annotations

import random

import pytest
import torch

from steering.budget import select_at_budgets
from steering.matched_report import SeedResults, chosen_key, chosen_settings
from steering.null_directions import null_markdown, null_rows, null_settings, null_vector, rank_p, same_vector
from steering.vectors import SteeringVector

USES_K = {"caa": False, "random_direction": False}


def test_null_vectors_keep_each_layers_norm_and_are_independent_draws():
    g = torch.Generator().manual_seed(0)
    ref = SteeringVector({3: torch.randn(512, generator=g) * 2.0, 5: torch.randn(512, generator=g)}, {"method": "x"})
    a, b = null_vector(ref, 1), null_vector(ref, 2)
    for layer in ref.layers:
        for v in (a, b):
            assert float(v.vectors[layer].norm()) == pytest.approx(float(ref.vectors[layer].norm()), rel=1e-5)
            assert abs(float(torch.cosine_similarity(v.vectors[layer], ref.vectors[layer], 0))) < 0.2
        assert abs(float(torch.cosine_similarity(a.vectors[layer], b.vectors[layer], 0))) < 0.2
    assert a.metadata == {"method": "x", "null_draw": 1}
    # seeded by the draw alone: the same direction for another reference (another split seed's control, same layers)
    other = SteeringVector({3: torch.ones(512), 5: torch.ones(512)}, {"method": "y"})
    for layer in ref.layers:
        u, w = null_vector(ref, 1).vectors[layer], null_vector(other, 1).vectors[layer]
        assert float(torch.cosine_similarity(u, w, 0)) == pytest.approx(1.0, abs=1e-6)
    assert same_vector(null_vector(ref, 1), a) and not same_vector(a, b)
    with pytest.raises(ValueError, match="draw 0 must be >= 1"):
        null_vector(ref, 0)


def test_rank_p_counts_the_draws_at_or_above():
    assert rank_p(1.0, [0.1, 0.2, 0.3]) == 0.25  # above every draw: the smallest p, 1 / (1 + n)
    assert rank_p(0.2, [0.1, 0.2, 0.3]) == 0.75  # ties count against the method
    assert rank_p(-1.0, [0.1, 0.2]) == 1.0
    with pytest.raises(ValueError, match="at least one null draw"):
        rank_p(0.0, [])


def _per(rows: list[int], cond: str, values: list[float], kl: list[float] | None = None) -> dict:
    per = {f"{cond}/p_positive": values}
    if kl is not None:
        per[f"{cond}/kl"] = kl
    return {"per_example": {k: {"index": list(range(len(rows))), "value": v} for k, v in per.items()},
            "splits": {"rows": {"test": rows}}}  # fmt: skip


def _seed(seed: int, rows: list[int], shifts: list[float], rd_budget: float = 0.01) -> SeedResults:
    """A split seed whose null draw j adds ``shifts[j]`` to every base value; CAA adds 0.3."""
    rng = random.Random(seed)
    base_row = {"method": "base", "k": None, "layers": None, "alpha": 0.0, "value": 0.4, "kl": None}
    sweeps = {m: [base_row, {"method": m, "k": None, "layers": [1, 2], "alpha": 4.0, "value": 0.5, "kl": kl}]
              for m, kl in (("caa", 0.02), ("random_direction", rd_budget))}  # fmt: skip
    selection = {"split_seed": seed, "budgets": [0.05], "target": "p_positive",
                 "choices": select_at_budgets(sweeps, [0.05]), "sweeps": sweeps}  # fmt: skip
    base = [rng.random() for _ in rows]
    kl = [0.01] * len(rows)
    tests = {key: _per(rows, "steered", [b + (0.3 if m == "caa" else 0.05) for b in base], kl)
             for key, m, _ in chosen_settings(selection, USES_K)}  # fmt: skip
    first = chosen_settings(selection, USES_K)[0][0]
    tests[first]["per_example"].update(_per(rows, "base", base)["per_example"])
    nulls = {}
    for key, _ in null_settings(selection, [0.05]):
        nulls[key] = [_per(rows, "steered", [b + s for b in base], [0.02 + j / 100] * len(rows))
                      for j, s in enumerate(shifts)]  # fmt: skip
    return SeedResults(selection, tests, first, {}, USES_K, nulls)


def test_null_rows_pool_the_seeds_and_place_each_method():
    shifts = [-0.1, 0.0, 0.1, 0.2]
    seeds = [_seed(0, list(range(10)), shifts), _seed(1, list(range(10, 25)), shifts)]
    (row,) = null_rows(seeds, [0.05], ["caa", "random_direction"], ["p_positive"])
    assert row["diffs"] == pytest.approx(shifts)  # a draw that adds s to every prompt differs from the base by s
    assert row["n"] == 4 and row["min"] == pytest.approx(-0.1) and row["max"] == pytest.approx(0.2)
    assert row["kl"] == pytest.approx(0.02 + 0.015)  # the draws' mean test KL
    assert row["methods"]["caa"] == pytest.approx({"diff": 0.3, "p": 0.2})  # above every draw: 1 / (1 + 4)
    assert row["methods"]["random_direction"]["p"] == pytest.approx(3 / 5)  # 0.05: two draws at or above
    assert row["setting"] == "L1-2_a4; L1-2_a4"
    md = null_markdown([row])
    assert "### Random-direction null" in md and "+0.3000 (0.20)" in md


def test_null_rows_refuse_unequal_draws_and_note_a_budget_without_a_control():
    a, b = _seed(0, list(range(5)), [0.1, 0.2]), _seed(1, list(range(5, 9)), [0.1])
    with pytest.raises(ValueError, match=r"hold \[2, 1\] null draws"):
        null_rows([a, b], [0.05], ["caa"], ["p_positive"])
    far = _seed(0, list(range(5)), [0.1], rd_budget=0.5)  # the control exceeds the budget: no setting, no draws
    assert null_settings(far.selection, [0.05]) == []
    (row,) = null_rows([far], [0.05], ["caa"], ["p_positive"])
    assert "no setting within this budget" in row["note"] and "no setting" in null_markdown([row])
    assert chosen_key("random_direction", a.choice(0.05, "random_direction")["chosen"], False) in a.nulls
    no_draws = _seed(0, list(range(5)), [0.1])
    no_draws.nulls = {}
    with pytest.raises(ValueError, match=r"split seeds \[0\] have no null draws"):
        null_rows([no_draws], [0.05], ["caa"], ["p_positive"])
