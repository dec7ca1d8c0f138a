"""The matched-KL report from records alone (steering.matched_report): pooling, missing settings, refusals."""

from __future__ import annotations

import random

import pytest

from steering.comparisons import paired_difference
from steering.matched_report import SeedResults, chosen_settings, result_rows, results_csv, results_markdown

USES_K = {"grains": True, "caa": False, "random_k": True, "random_direction": False}


def _sweep_row(method: str, alpha: float, kl: float, value: float) -> dict:
    return {"method": method, "k": 10 if USES_K[method] else None, "layers": [8, 9], "alpha": alpha,
            "target": "mc2", "value": value, "kl": kl}  # fmt: skip


def _record(rows: list[int], cond: str, rng: random.Random, p_right: float) -> dict:
    n = len(rows)
    per = {f"{cond}/mc1": [float(rng.random() < p_right) for _ in range(n)],
           f"{cond}/mc2": [rng.random() for _ in range(n)], f"{cond}/nll": [3.0] * n}  # fmt: skip
    if cond == "steered":
        per["steered/kl"] = [rng.random() / 10 for _ in range(n)]
    return {"per_example": {k: {"index": list(range(n)), "value": v} for k, v in per.items()},
            "metrics": {f"test/{k}": sum(v) / n for k, v in per.items()}, "splits": {"rows": {"test": rows}},
            "vector_path": f"{cond}.safetensors"}  # fmt: skip


def _seed(seed: int, test_rows: list[int], grains_fits_small_budget: bool, controls: bool = False) -> SeedResults:
    rng = random.Random(seed)
    base_row = {"method": "base", "k": None, "layers": None, "alpha": 0.0, "target": "mc2", "value": 0.4, "kl": None}
    sweeps = {
        "grains": [base_row, _sweep_row("grains", 2.0, 0.01 if grains_fits_small_budget else 0.08, 0.45),
                   _sweep_row("grains", 4.0, 0.09, 0.5)],
        "caa": [base_row, _sweep_row("caa", 2.0, 0.02, 0.47), _sweep_row("caa", 8.0, 0.2, 0.6)],
    }  # fmt: skip
    if controls:
        sweeps["random_k"] = [base_row, _sweep_row("random_k", 4.0, 0.03, 0.42)]
        sweeps["random_direction"] = [base_row, _sweep_row("random_direction", 4.0, 0.04, 0.41)]
    from steering.budget import select_at_budgets

    selection = {"split_seed": seed, "budgets": [0.05, 0.1], "target": "mc2",
                 "choices": select_at_budgets(sweeps, [0.05, 0.1]), "sweeps": sweeps}  # fmt: skip
    settings = chosen_settings(selection, USES_K)
    tests = {key: _record(test_rows, "steered", rng, 0.5) for key, _, _ in settings}
    tests[settings[0][0]]["per_example"].update(_record(test_rows, "base", rng, 0.3)["per_example"])
    refs = {"constant": {"mc1": 0.0, "mc2": 0.3, "n": len(test_rows)}}
    return SeedResults(selection, tests, settings[0][0], refs, USES_K)


def test_pooled_rows_pool_the_questions_of_disjoint_folds():
    seeds = [_seed(0, list(range(0, 20)), True), _seed(1, list(range(20, 45)), False)]
    rows = result_rows(seeds, [0.05, 0.1], ["grains", "caa"], resamples=300)
    assert len(rows) == 2 * 3 * 3  # budgets × (base + 2 methods) × (2 seeds + pooled)
    pooled = {(r["budget"], r["method"]): r for r in rows if r["split_seed"] == "pooled"}
    assert pooled[(0.1, "base")]["n_test"] == 45
    r = pooled[(0.1, "grains")]
    mine = seeds[0].values(0.1, "grains", "mc1") + seeds[1].values(0.1, "grains", "mc1")
    base = seeds[0].values(0.1, "base", "mc1") + seeds[1].values(0.1, "base", "mc1")
    d = paired_difference("mc1", mine, base, resamples=300)
    assert (r["d_mc1_base"], r["d_mc1_base_low"], r["d_mc1_base_high"]) == (d.mean, d.low, d.high)
    assert r["d_mc1_base_p_mcnemar"] == d.p_mcnemar and r["d_mc1_base_verdict"] == d.verdict
    assert r["setting"] == "k10_L8-9_a4; k10_L8-9_a4"
    # seed 1 has no GrAInS setting within 0.05: its row and the pooled row say so, seed 0's row does not
    small = {r["split_seed"]: r for r in rows if r["budget"] == 0.05 and r["method"] == "grains"}
    assert "no setting within the budget" in small["1"]["note"] and "0.08" in small["1"]["note"]
    assert "no setting within the budget" in small["pooled"]["note"] and not small["0"].get("note")
    assert all(r["dev_kl"] <= r["budget"] for r in rows if r.get("dev_kl") is not None)
    md = results_markdown(rows, [], ["mc1", "mc2"], "mc2", "pooled")
    assert md.count("### dev KL") == 2 and md.count("| grains |") == 2
    assert results_csv(rows, ["mc1", "mc2"]).count("\n") == len(rows) + 1


def test_overlapping_test_folds_are_not_pooled():
    seeds = [_seed(0, list(range(0, 20)), True), _seed(1, list(range(19, 44)), True)]
    with pytest.raises(ValueError, match="test row 19 is in the test split of split seeds 0 and 1"):
        result_rows(seeds, [0.1], ["grains", "caa"], resamples=10)


def test_a_record_tested_on_other_questions_than_the_base_is_refused():
    seed = _seed(0, list(range(20)), True)
    for rec in seed.tests.values():
        if rec is not seed.base:
            rec["splits"] = {"rows": {"test": list(range(1, 21))}}
    with pytest.raises(ValueError, match="was tested on other questions than the base model"):
        result_rows([seed], [0.1], ["grains", "caa"], resamples=10)


def _continuation_seed(seed: int, test_rows: list[int]) -> SeedResults:
    """A sentiment split seed: graded p_positive, 0 / 1 positive_rate, fluency per prompt, no references."""
    from steering.budget import select_at_budgets

    rng = random.Random(seed)

    def row(method, alpha, kl, value, ppl):
        return {**_sweep_row(method, alpha, kl, value), "target": "p_positive", "continuation_ppl": ppl}

    base_row = {"method": "base", "k": None, "layers": None, "alpha": 0.0, "target": "p_positive", "value": 0.4,
                "kl": None, "continuation_ppl": 20.0}  # fmt: skip
    sweeps = {"grains": [base_row, row("grains", 4.0, 0.03, 0.6, 25.0)],
              "caa": [base_row, row("caa", 4.0, 0.04, 0.55, 30.0)]}  # fmt: skip
    selection = {"split_seed": seed, "budgets": [0.05], "target": "p_positive",
                 "choices": select_at_budgets(sweeps, [0.05]), "sweeps": sweeps}  # fmt: skip
    settings = chosen_settings(selection, USES_K)

    def record(cond):
        n = len(test_rows)
        per = {
            f"{cond}/p_positive": [rng.random() for _ in range(n)],
            f"{cond}/positive_rate": [float(rng.random() < 0.5) for _ in range(n)],
            f"{cond}/continuation_nll": [rng.uniform(2, 4) for _ in range(n)],
            f"{cond}/continuation_tokens": [float(rng.randint(1, 20)) for _ in range(n)],
            f"{cond}/nll": [3.0] * n,
        }
        if cond == "steered":
            per["steered/kl"] = [rng.random() / 10 for _ in range(n)]
        return {"per_example": {k: {"index": list(range(n)), "value": v} for k, v in per.items()},
                "splits": {"rows": {"test": test_rows}}, "vector_path": f"{cond}.safetensors"}  # fmt: skip

    tests = {key: record("steered") for key, _, _ in settings}
    tests[settings[0][0]]["per_example"].update(record("base")["per_example"])
    return SeedResults(selection, tests, settings[0][0], {}, USES_K)


def test_continuation_rows_carry_fluency_and_test_the_judge_metrics_only():
    import math

    seeds = [_continuation_seed(0, list(range(0, 15))), _continuation_seed(1, list(range(15, 40)))]
    assert seeds[0].targets() == ["p_positive", "positive_rate"]  # fluency is not a task metric
    rows = result_rows(seeds, [0.05], ["grains", "caa"], resamples=200)
    pooled = {r["method"]: r for r in rows if r["split_seed"] == "pooled"}
    for method, r in pooled.items():
        cond = "base" if method == "base" else "steered"
        nll = [v for s in seeds for v in (s.base if method == "base" else s.record(0.05, method))["per_example"][
            f"{cond}/continuation_nll"]["value"]]  # fmt: skip
        assert r["cont_ppl"] == pytest.approx(math.exp(sum(nll) / len(nll)))  # exp of the mean NLL over prompts
        assert 1 <= r["cont_tokens"] <= 20 and "continuation_nll" not in r
    assert pooled["base"]["dev_cont_ppl"] == 20.0 and pooled["grains"]["dev_cont_ppl"] == 25.0
    g = pooled["grains"]
    assert g["d_p_positive_base_p_mcnemar"] is None and g["d_positive_rate_base_p_mcnemar"] is not None
    assert g["d_positive_rate_caa_verdict"] is not None and "d_mc1_base" not in g
    md = results_markdown(rows, [], seeds[0].targets(), "p_positive", "pooled")
    assert "Score-free references (constant scorer, longest answer): skipped" in md
    assert "test cont. ppl" in md and "positive_rate − CAA" in md and "mc1" not in md
    header = results_csv(rows, seeds[0].targets()).splitlines()[0].split(",")
    assert {"dev_cont_ppl", "cont_ppl", "cont_tokens", "d_positive_rate_caa_p_mcnemar"} <= set(header)


def test_each_method_is_compared_with_its_own_no_signal_control():
    methods = ["grains", "caa", "random_k", "random_direction"]
    seeds = [_seed(0, list(range(0, 20)), True, controls=True), _seed(1, list(range(20, 45)), True, controls=True)]
    rows = result_rows(seeds, [0.1], methods, resamples=300)
    pooled = {r["method"]: r for r in rows if r["split_seed"] == "pooled"}

    def values(method):
        return seeds[0].values(0.1, method, "mc2") + seeds[1].values(0.1, method, "mc2")

    for method, control in (("grains", "random_k"), ("caa", "random_direction")):
        d = paired_difference("mc2", values(method), values(control), resamples=300)
        assert (pooled[method]["d_mc2_control"], pooled[method]["d_mc2_control_low"]) == (d.mean, d.low)
    for method in ("base", "random_k", "random_direction"):
        assert pooled[method].get("d_mc2_control") is None
    for method in ("grains", "caa", "random_k"):  # every method is also read against the random direction
        d = paired_difference("mc2", values(method), values("random_direction"), resamples=300)
        assert (pooled[method]["d_mc2_random"], pooled[method]["d_mc2_random_high"]) == (d.mean, d.high)
    assert pooled["caa"]["d_mc2_random"] == pooled["caa"]["d_mc2_control"]
    assert pooled["random_direction"].get("d_mc2_random") is None
    md = results_markdown(rows, [], ["mc1", "mc2"], "mc2", "pooled")
    assert "mc2 − control [95% CI]" in md and "GrAInS − random-k" in md and "mc2 − random direction [95% CI]" in md
    assert "d_mc2_control_low" in results_csv(rows, ["mc1", "mc2"]).splitlines()[0]
    # without the control among the methods, the column stays empty rather than failing
    rows = result_rows(seeds, [0.1], ["grains", "caa"], resamples=50)
    assert all(r.get("d_mc2_control") is None for r in rows)


def test_holm_adjusts_each_tables_distinct_comparisons_once():
    from lmcore.statistics import holm, mcnemar_exact, paired_t_p_value

    methods = ["grains", "caa", "random_k", "random_direction"]
    seeds = [_seed(0, list(range(0, 20)), True, controls=True), _seed(1, list(range(20, 45)), True, controls=True)]
    rows = result_rows(seeds, [0.05, 0.1], methods, resamples=100)
    for budget in (0.05, 0.1):
        for label in ("0", "1", "pooled"):
            table = {r["method"]: r for r in rows if (r["budget"], r["split_seed"]) == (budget, label)}
            for metric in ("mc1", "mc2"):
                family = {}
                for r in table.values():
                    for ref in ("base", "caa", "control", "random"):
                        if r.get(f"d_{metric}_{ref}_p") is not None:
                            pair = frozenset((r["method"], r[f"d_{metric}_{ref}_against"]))
                            family.setdefault(pair, r[f"d_{metric}_{ref}_p"])
                # 4 against base, 3 against CAA, GrAInS − random-k, GrAInS and random-k − random direction
                assert len(family) == 10
                expected = dict(zip(family, holm(list(family.values()))))
                for r in table.values():
                    for ref in ("base", "caa", "control", "random"):
                        if r.get(f"d_{metric}_{ref}_p") is not None:
                            pair = frozenset((r["method"], r[f"d_{metric}_{ref}_against"]))
                            assert r[f"d_{metric}_{ref}_p_holm"] == expected[pair] >= r[f"d_{metric}_{ref}_p"]
            # one comparison read from both of its rows has one p and one adjusted p
            caa, base = table["caa"], table["base"]
            assert caa["d_mc2_control_p_holm"] == caa["d_mc2_random_p_holm"]
            assert caa["d_mc2_base_p_holm"] == base["d_mc2_caa_p_holm"]
    pooled = {r["method"]: r for r in rows if (r["budget"], r["split_seed"]) == (0.1, "pooled")}
    mine = seeds[0].values(0.1, "grains", "mc2") + seeds[1].values(0.1, "grains", "mc2")
    base = seeds[0].values(0.1, "base", "mc2") + seeds[1].values(0.1, "base", "mc2")
    assert pooled["grains"]["d_mc2_base_p"] == paired_t_p_value(mine, base)
    mine = seeds[0].values(0.1, "grains", "mc1") + seeds[1].values(0.1, "grains", "mc1")
    base = seeds[0].values(0.1, "base", "mc1") + seeds[1].values(0.1, "base", "mc1")
    assert pooled["grains"]["d_mc1_base_p"] == mcnemar_exact([v == 1 for v in mine], [v == 1 for v in base]).p_value
    assert "Holm p" in results_markdown(rows, [], ["mc1", "mc2"], "mc2", "pooled")
    assert "d_mc2_caa_p_holm" in results_csv(rows, ["mc1", "mc2"]).splitlines()[0]


def test_against_caa_at_no_more_side_effect_matches_on_dev_kl_across_budgets():
    from lmcore.statistics import holm
    from steering.matched_report import lower_kl_csv, lower_kl_markdown, lower_kl_rows, pooled_values

    seeds = [_seed(0, list(range(0, 20)), True), _seed(1, list(range(20, 45)), True)]
    rows = result_rows(seeds, [0.05, 0.1], ["grains", "caa"], resamples=50)
    dev_kl = {("grains", 0.05): 0.02, ("grains", 0.1): 0.05, ("caa", 0.05): 0.03, ("caa", 0.1): 0.08}
    for r in rows:
        if (r["method"], r["budget"]) in dev_kl and r["split_seed"] == "pooled":
            r["dev_kl"] = dev_kl[(r["method"], r["budget"])]
            r["kl"] = 1.0 - r["dev_kl"]  # test KL in the opposite order: the choice must not read it
    lower = [r for r in lower_kl_rows(seeds, rows, ["grains", "caa"], resamples=50) if r["split_seed"] == "pooled"]
    got = {(r["direction"], r.get("budget"), r.get("caa_budget")): r for r in lower}
    # GrAInS at 0.05 (dev KL 0.02): no CAA setting at or below; at 0.1 (0.05): CAA's 0.05 setting (0.03)
    assert "no chosen setting at or below dev KL 0.02" in got[("caa_at_most", 0.05, None)]["note"]
    r = got[("caa_at_most", 0.1, 0.05)]
    assert (r["dev_kl"], r["caa_dev_kl"], r["kl"], r["caa_kl"]) == (0.05, 0.03, 0.95, 0.97)
    mine = pooled_values(seeds, 0.1, "grains", "mc2")
    d = paired_difference("mc2", mine, pooled_values(seeds, 0.05, "caa", "mc2"), resamples=50)
    assert len(mine) == 45 and (r["d_mc2"], r["d_mc2_low"], r["d_mc2_verdict"]) == (d.mean, d.low, d.verdict)
    # CAA at 0.05 (0.03) against GrAInS at 0.05 (0.02); CAA at 0.1 (0.08) against GrAInS at 0.1 (0.05)
    assert got[("method_at_most", 0.05, 0.05)]["dev_kl"] == 0.02 and got[("method_at_most", 0.1, 0.1)]["dev_kl"] == 0.05
    assert len(lower) == 4 and all(r["method"] == "grains" for r in lower)
    tested = [r for r in lower if not r.get("note")]
    assert [r["d_mc2_p_holm"] for r in tested] == holm([r["d_mc2_p"] for r in tested])  # one family per table
    md = lower_kl_markdown(lower, ["mc1", "mc2"], "pooled")
    assert md.count("| grains |") == 4 and "Against CAA at no more side effect" in md and "Holm p" in md
    assert lower_kl_csv(lower, ["mc1", "mc2"]).count("\n") == 5
    assert lower_kl_rows(seeds, rows, ["grains", "random_k"]) == []  # no CAA: nothing to read against


def test_a_method_without_a_setting_and_a_caa_without_a_lower_one_get_notes():
    from steering.matched_report import lower_kl_markdown, lower_kl_rows

    seed = _seed(1, list(range(25)), False)  # GrAInS has no setting within 0.05
    rows = result_rows([seed], [0.05, 0.1], ["grains", "caa"], resamples=50)
    for r in rows:
        if r["method"] == "caa" and r["budget"] == 0.05:
            r["dev_kl"] = 0.001  # below any GrAInS setting
    found = lower_kl_rows([seed], rows, ["grains", "caa"])
    lower = {(r["direction"], r.get("budget"), r.get("caa_budget")): r for r in found}
    assert lower[("caa_at_most", 0.05, None)]["note"] == "grains has no chosen setting within budget 0.05"
    assert "grains has no chosen setting at or below dev KL 0.001" in lower[("method_at_most", None, 0.05)]["note"]
    # and CAA at 0.1 (its dev KL 0.02 setting) finds no GrAInS setting at or below 0.02 either
    assert "at or below dev KL 0.02" in lower[("method_at_most", None, 0.1)]["note"]
    assert lower_kl_markdown(found, ["mc1", "mc2"], "1").count("no chosen setting") == 3


def test_holm_verdict_on_a_hand_computed_family():
    from steering.matched_report import _set_holm, _verdict_cell

    # p = 0.01, 0.02, 0.04 over 3 comparisons: Holm 0.03, 0.04, 0.04 -> all stay below 0.05
    # p = 0.02, 0.03 with a third 0.5: Holm 0.06, 0.06, 0.5 -> 'higher' turns into 'no difference'
    row = {"d_mc2_verdict": "higher"}
    _set_holm(row, "d_mc2", 0.06, 0.95)
    assert row["d_mc2_verdict_holm"] == "no difference"
    assert _verdict_cell(row, "d_mc2") == "higher; Holm p 0.06; after Holm: no difference"
    _set_holm(row, "d_mc2", 0.03, 0.95)
    assert row["d_mc2_verdict_holm"] == "higher" and _verdict_cell(row, "d_mc2") == "higher; Holm p 0.03"
