import pytest

from cap_lightning.reproduce import build_prior, parse_args, plot, summarise


def _records():
    out = []
    for method, acc in (("baseline", 0.6), ("cap", 0.62)):
        for seed, jitter in ((0, 0.01), (1, -0.01)):
            metrics = {"test/acc": acc + jitter, "test/macro_f1": acc, "test/comp_aopc": 0.1, "test/suff_aopc": 0.2}
            prior = {} if method == "baseline" else {"seconds": 10.0 + seed}
            out.append({"dataset": "hwu64", "method": method, "seed": seed, "split": "few_shot", "shots": 10,
                        "metrics": metrics, "prior": prior, "fit_seconds": 5.0})  # fmt: skip
    return out


def test_summary_table_has_mean_and_std_per_method(tmp_path):
    text, rows = summarise(_records())
    assert "| baseline | 0,1 | 60.00 ± 1.41 |" in text and "| cap | 0,1 | 62.00 ± 1.41 |" in text
    assert "10.50 ± 0.71" in text  # prior seconds of the cap runs
    assert len(rows) == 4 and {r["method"] for r in rows} == {"baseline", "cap"}
    plot(_records(), tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_arguments_are_validated():
    with pytest.raises(SystemExit):
        parse_args(["--methods", "cap"])  # the prior methods need the baseline checkpoint
    with pytest.raises(SystemExit):
        parse_args(["--datasets", "mnist"])
    args = parse_args(["--datasets", "hwu64", "--methods", "baseline", "hybrid_max"])
    prior = build_prior("hybrid_max", "ref.ckpt", "hwu64", args)
    assert prior.agg == "max" and [type(s).__name__ for s in prior.sources] == [
        "ClassAwarePrior",
        "LIMEPrior",
        "IGPrior",
    ]


def test_robustness_columns_appear_when_attacked_splits_were_scored():
    records = _records()
    for r in records:
        r["metrics"] |= {"adv/deepwordbug/attacked_acc": 0.3, "adv/deepwordbug/attack_success_rate": 0.5}
    text, _ = summarise(records)
    assert "deepwordbug/acc under attack" in text and "| 30.00 ± 0.00 | 50.00 ± 0.00 |" in text
