import json
import shutil

import pytest
import torch
import yaml

from cap_lightning.reproduce import collect_finished, main, parse_args, run_config
from cap_lightning.reproduce_plan import (
    METHODS,
    Run,
    check_methods,
    choose_lambda,
    final_runs,
    reference_of,
    selection_runs,
)
from cap_lightning.reproduce_report import (
    Comparisons,
    dataset_table,
    header,
    paired_deltas,
    plot,
    robustness_table,
    verdict_line,
    write_results,
)
from lmcore.cli import run_cli
from lmcore.statistics import holm, paired_t_p_value


# ------------------------------------------------------------------------------------------------- the plan
def test_selection_runs_cover_every_tuned_prior_and_lambda_on_the_tuning_seed_only():
    runs = selection_runs("hwu64", ["baseline", "ig", "cap", "shuffled"], [0.1, 1.0], seed=0)
    assert runs[0] == Run("hwu64", "baseline", 0, 0.0, "select")
    # without the Hybrid (control_of) IG is tuned too; controls never are
    assert {(r.method, r.prior_weight) for r in runs[1:]} == {("ig", 0.1), ("ig", 1.0), ("cap", 0.1), ("cap", 1.0)}
    assert {r.seed for r in runs} == {0} and all(r.stage == "select" for r in runs)
    # with it, IG and LIME alone take its λ, and its grid runs first
    runs = selection_runs("hwu64", ["baseline", "ig", "lime", "cap", "hybrid_mean", "shuffled"], [0.1, 1.0], seed=0)
    assert [(r.method, r.prior_weight) for r in runs[1:]] == [("hybrid_mean", 0.1), ("hybrid_mean", 1.0),
                                                             ("cap", 0.1), ("cap", 1.0)]  # fmt: skip


def test_final_runs_use_the_chosen_lambda_few_seeds_for_single_sources_and_controls_at_the_hybrids_lambda():
    chosen = {"cap": 0.1, "hybrid_mean": 1.0}
    runs = final_runs("banking77", ["baseline", "ig", "cap", "hybrid_mean", "uniform", "shuffled"], [1, 2, 3], 2,
                      chosen)  # fmt: skip
    by = {}
    for r in runs:
        by.setdefault(r.method, []).append(r)
    assert [r.seed for r in by["baseline"]] == [1, 2, 3] and runs[0].method == "baseline"
    assert [r.seed for r in by["ig"]] == [1, 2] and {r.prior_weight for r in by["ig"]} == {1.0}  # the Hybrid's λ
    assert [r.seed for r in by["cap"]] == [1, 2, 3] and {r.prior_weight for r in by["cap"]} == {0.1}
    assert {r.prior_weight for r in by["uniform"] + by["shuffled"]} == {1.0}
    assert all(r.stage == "final" for r in runs)
    # the central comparison first: Hybrid, shuffled, the other tuned priors, uniform, the single sources
    assert list(dict.fromkeys(r.method for r in runs)) == ["baseline", "hybrid_mean", "shuffled", "cap", "uniform",
                                                          "ig"]  # fmt: skip
    assert final_runs("d", ["baseline", "ig"], [1], 1, {"ig": 0.3}) == [Run("d", "baseline", 1, 0.0, "final"),
                                                                       Run("d", "ig", 1, 0.3, "final")]  # fmt: skip


def test_lambda_ties_go_to_the_smaller_lambda_and_folders_do_not_collide():
    assert choose_lambda({0.03: 0.80, 0.1: 0.82, 0.3: 0.82, 1.0: 0.5}) == 0.1
    with pytest.raises(ValueError, match="no validation scores"):
        choose_lambda({})
    a, b = Run("d", "cap", 0, 0.1, "select"), Run("d", "cap", 0, 0.3, "select")
    assert len({a.folder, b.folder, Run("d", "cap", 0, 0.1, "final").folder}) == 3
    # IG / LIME references come from another seed's CE baseline, never the run's own
    assert reference_of(a, 0, 1) == Run("d", "baseline", 1, 0.0, "final")
    assert reference_of(Run("d", "cap", 3, 0.1, "final"), 0, 1) == Run("d", "baseline", 0, 0.0, "select")
    assert reference_of(Run("d", "baseline", 1, 0.0, "final"), 0, 1) == Run("d", "baseline", 0, 0.0, "select")


@pytest.mark.parametrize(
    "methods,control_of,match",
    [(["cap"], "hybrid_mean", "keep 'baseline'"), (["baseline", "mnist"], "hybrid_mean", "unknown methods"),
     (["baseline", "shuffled"], "hybrid_mean", "add it to the methods"),
     (["baseline", "cap"], "uniform", "control_of must be")],
)  # fmt: skip
def test_bad_method_lists_are_refused(methods, control_of, match):
    with pytest.raises(ValueError, match=match):
        check_methods(methods, control_of)


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "argv", [["--methods", "cap"], ["--datasets", "mnist"], ["--tune-seed", "1"], ["--lambdas", "0"],
             ["--attack-recipes", "textfooler"], ["--epochs", "0"], ["--epochs", "12", "--val-every", "5"]],
)  # fmt: skip
def test_arguments_are_validated(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_selection_runs_never_test_and_prior_runs_read_another_seeds_baseline():
    args = parse_args(["--datasets", "hwu64", "--methods", "baseline", "hybrid_max"])
    select = run_config(Run("hwu64", "hybrid_max", 0, 0.3, "select"), args)
    assert select["test_after_fit"] is False and select["model"]["init_args"]["faithfulness"] is False
    assert select["model"]["init_args"]["prior_weight"] == 0.3
    (prior_cb,) = [c for c in select["trainer"]["callbacks"] if c["class_path"].endswith("PriorCacheCallback")]
    prior = prior_cb["init_args"]["prior"]["init_args"]
    assert prior["agg"] == "max"
    assert [s["class_path"].rsplit(".", 1)[1] for s in prior["sources"]] == ["ClassAwarePrior", "LIMEPrior", "IGPrior"]
    # a selection run's reference: the first reported seed's baseline (not the tuning seed's own)
    assert prior["sources"][2]["init_args"]["model_path"].endswith("hwu64/baseline/s1/checkpoints/best.ckpt")
    args = parse_args(["--methods", "baseline", "hybrid_mean", "shuffled"])
    control = run_config(Run("hwu64", "shuffled", 2, 0.3, "final"), args)
    (prior_cb,) = [c for c in control["trainer"]["callbacks"] if c["class_path"].endswith("PriorCacheCallback")]
    assert (
        prior_cb["init_args"]["control"] == "shuffled" and prior_cb["init_args"]["prior"]["init_args"]["agg"] == "mean"
    )
    ig = prior_cb["init_args"]["prior"]["init_args"]["sources"][2]["init_args"]
    assert ig["model_path"].endswith("hwu64/select/baseline/s0/checkpoints/best.ckpt")  # the tuning seed's baseline
    final = run_config(Run("hwu64", "baseline", 2, 0.0, "final"), args)
    assert final["test_after_fit"] is True and final["seed_everything"] == 2 and final["data"]["init_args"]["seed"] == 2


def test_every_run_config_type_checks_as_a_lightning_config(tmp_path, capsys):
    args = parse_args(["--methods", *METHODS, "--prior-mask", "teacher_correct"])
    for method in args.methods:
        path = tmp_path / f"{method}.yaml"
        path.write_text(yaml.safe_dump(run_config(Run("banking77", method, 1, 0.1, "final"), args)))
        try:
            run_cli(["fit", "--config", str(path), "--print_config"])
        except SystemExit as e:
            assert e.code in (0, None), capsys.readouterr().err
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------- report
def _records(methods=(("baseline", 0.60), ("cap", 0.62), ("shuffled", 0.62))):
    out = []
    for method, acc in methods:
        for seed, jitter in ((1, 0.01), (2, -0.01), (3, 0.0)):
            metrics = {"test/acc": acc + jitter + (0.001 * seed if method == "cap" else 0), "test/macro_f1": acc}
            lam = 0.0 if method == "baseline" else 0.1
            train = {"train/ce": 0.5} | ({} if method == "baseline" else {"train/align": 0.02 * seed})
            out.append({"dataset": "hwu64", "method": method, "seed": seed, "prior_weight": lam, "metrics": metrics,
                        "prior": {"seconds": 3.0}, "fit_seconds": 5.0, "train": train})  # fmt: skip
    return out


def _cell(records, reference, metric="test/acc"):
    family = Comparisons()
    family.add(("a", "b"), records, reference, metric)
    return family.cells()[("a", "b")]


def test_paired_difference_has_an_interval_and_says_no_difference_when_it_contains_zero():
    records = _records()
    cap = [r for r in records if r["method"] == "cap"]
    base = [r for r in records if r["method"] == "baseline"]
    shuffled = [r for r in records if r["method"] == "shuffled"]
    assert _cell(cap, base).startswith("+2.20 [") and "higher, p_Holm" in _cell(cap, base)
    # the same +2 on all 3 seeds: no spread for a t test; the sign test's p = 0.25 says no difference (n=3)
    assert _cell(shuffled, base) == "+2.00 [+2.00, +2.00] no difference, p_Holm 0.25"
    assert _cell(cap, shuffled).startswith("+0.20 [-0.05, +0.45] no difference")  # 3 seeds: t(2) is wide
    noisy = [dict(r, metrics={"test/acc": 0.6 + (0.02 if r["seed"] == 1 else -0.01)}) for r in base]
    assert "no difference" in _cell(noisy, base)
    assert _cell(cap[:1], base) == "+2.10 (n=1)" and _cell([], base) == "–"


def test_a_tables_comparisons_are_one_holm_family():
    records = _records((("baseline", 0.60), ("cap", 0.62), ("shuffled", 0.62), ("hybrid_mean", 0.605)))
    groups = {m: [r for r in records if r["method"] == m] for m in ("baseline", "cap", "shuffled", "hybrid_mean")}
    family = Comparisons()
    pairs = [("cap", "baseline"), ("shuffled", "baseline"), ("hybrid_mean", "baseline"), ("hybrid_mean", "shuffled")]
    for a, b in pairs:
        family.add((a, b), groups[a], groups[b], "test/acc")
    raw = [paired_t_p_value([100 * r["metrics"]["test/acc"] for r in groups[a]],
                            [100 * r["metrics"]["test/acc"] for r in groups[b]]) for a, b in pairs]  # fmt: skip
    cells = family.cells()
    for (a, b), q in zip(pairs, holm(raw)):
        assert cells[(a, b)].endswith(f"p_Holm {q:.2g}")
    lines = dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}})
    (row,) = [line for line in lines if line.startswith("| hybrid_mean |")]
    assert row.split(" | ")[4] == cells[("hybrid_mean", "baseline")]
    assert row.split(" | ")[5] == cells[("hybrid_mean", "shuffled")]


def test_robustness_is_paired_over_the_attacked_seeds_and_the_verdict_reads_the_intervals():
    records = _records((("baseline", 0.60), ("shuffled", 0.60), ("hybrid_mean", 0.65)))
    for r in records:  # the Hybrid is more robust by 10.5, 11, 11.5 points on seeds 1-3; the shuffled control by 0
        under = 0.2 + (0.1 + 0.005 * r["seed"] if r["method"] == "hybrid_mean" else 0.0) + 0.01 * r["seed"]
        r["metrics"].update({"adv/pwws/clean_acc": 0.8, "adv/pwws/attacked_acc": under,
                             "adv/pwws/attack_success_rate": 1 - under / 0.8})  # fmt: skip
    lines = dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}})
    text = "\n".join(lines)
    assert "Under attack: **pwws**" in text
    (row,) = [line for line in lines if line.startswith("| hybrid_mean | 1,2,3 | 80.00")]
    assert row.split(" | ")[4].startswith("+11.00 [+9.76, +12.24] higher")  # t(2) = 4.303, sd 0.5, n 3
    assert row.split(" | ")[5].startswith("+11.00 [+9.76, +12.24] higher")
    verdict = verdict_line({m: [r for r in records if r["method"] == m] for m in ("baseline", "shuffled",
                                                                                  "hybrid_mean")})  # fmt: skip
    assert "accuracy under pwws vs baseline: higher (+11.00" in verdict
    assert "test accuracy vs baseline: no difference (+5.00 [+5.00, +5.00])" in verdict  # +5 on 3 seeds: sign test
    assert verdict_line({"baseline": records[:3]}).endswith("no reported run yet.")


def test_a_cell_whose_interval_excludes_zero_but_not_after_holm_says_so():
    """The word beside p_Holm must not contradict it: a difference whose unadjusted 95 % interval excludes 0 but
    whose Holm-adjusted p is ≥ 0.05 is marked as no difference after Holm."""
    base = [{"seed": s, "metrics": {"test/acc": 0.6}} for s in (1, 2, 3, 4, 5)]
    lifts = {"a": (2.1, 1.9, 2.3, 1.7, 2.0), "b": (0.9, 0.1, 1.4, 0.3, 1.0), "c": (0.8, -0.3, 1.3, 0.0, 1.2)}
    family = Comparisons()
    for name, lift in lifts.items():
        family.add((name, "baseline"), [{"seed": s, "metrics": {"test/acc": 0.6 + d / 100}}
                                        for s, d in zip((1, 2, 3, 4, 5), lift)], base, "test/acc")  # fmt: skip
    cells = family.cells()
    p_b = paired_t_p_value([0.6 + d / 100 for d in lifts["b"]], [0.6] * 5)
    assert p_b < 0.05 and "higher" in cells[("b", "baseline")]  # unadjusted: the interval excludes 0
    assert "(Holm: no difference)" in cells[("b", "baseline")] and "Holm" not in cells[("a", "baseline")].split(",")[0]


def test_the_verdict_shows_a_single_seeds_difference_and_the_asr_of_a_collapsed_model_is_not_nan():
    records = _records((("baseline", 0.60), ("shuffled", 0.60), ("hybrid_mean", 0.65)))
    for r in records:
        clean = 0.0 if r["method"] == "hybrid_mean" else 0.8  # a collapsed model: no correct clean prediction
        r["metrics"].update({"adv/pwws/clean_acc": clean, "adv/pwws/attacked_acc": 0.0,
                             "adv/pwws/attack_success_rate": float("nan") if clean == 0 else 1.0})  # fmt: skip
    by_method = {m: [r for r in records if r["method"] == m] for m in ("baseline", "shuffled", "hybrid_mean")}
    text = "\n".join(robustness_table(by_method))
    assert "nan" not in text.lower()
    one = {"baseline": by_method["baseline"], "hybrid_mean": by_method["hybrid_mean"][:1]}
    assert "test accuracy vs baseline: +5.00 (n=1, no interval)" in verdict_line(one)


def test_rows_that_read_other_reference_weights_are_named_in_the_notes():
    """A retrained reference gives other weights: the ρ columns of rows that read the old and the new one are not
    against the same priors, and the table must say so."""
    records = _records((("baseline", 0.60), ("hybrid_mean", 0.62)))
    for r in records:
        r["reference_sha256"] = ("a" if r["method"] == "baseline" else "b") * 64
    text = "\n".join(dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}}))
    assert (
        "read different copies of the reference" in text
        and "baseline: aaaaaaaa" in text
        and "hybrid_mean: bbbbbbbb" in text
    )
    same = _records((("baseline", 0.60), ("hybrid_mean", 0.62)))
    assert "copies of the reference" not in "\n".join(
        dataset_table(same, {"dataset": "hwu64", "scores": {}, "chosen": {}})
    )


def test_results_files(tmp_path):
    records = _records()
    selection = {"dataset": "hwu64", "scores": {"cap": {0.1: 0.7, 1.0: 0.6}}, "chosen": {"cap": 0.1},
                 "baseline_val": 0.65}  # fmt: skip
    settings = vars(parse_args([]))
    write_results(tmp_path, records, [selection], settings, "abc123", 12.0)
    text = (tmp_path / "results.md").read_text()
    assert "**70.00**" in text and "| 60.00 |" in text  # the chosen λ is marked, the other is not
    assert "| baseline (λ=0) | 65.00 | 65.00 |" in text
    assert "Δ Acc vs baseline" in text and "abc123" in text and "15 epochs" in text
    assert "another 10-shot sample" in text  # the reference's labelled sample reaches the prior arms: said
    assert "paired t, df = seeds − 1" in text and "sign test" in text and "Holm" in text  # every test named
    assert "-shot sample" not in header({**settings, "split": "full"}, "abc123", 12.0)
    cap_row = next(line for line in text.splitlines() if line.startswith("| cap |") and "1,2,3" in line)
    assert cap_row.split(" | ")[5] == "–"  # the shuffled control shuffles the Hybrid's prior: no CAP − shuffled cell
    head = next(line for line in text.splitlines() if line.startswith("| Method |")).split(" | ")
    base_row = next(line for line in text.splitlines() if line.startswith("| baseline |") and "1,2,3" in line)
    at = head.index("λ·align")
    assert cap_row.split(" | ")[at] == "4.00 ± 2.00" and base_row.split(" | ")[at] == "–"  # 0.1 × 0.02·seed × 1000
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 1 + len(records)
    plot(records, tmp_path / "p.png", [selection])
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_plotted_differences_are_paired_by_seed_over_the_seeds_both_ran():
    records = _records()
    records = [r for r in records if not (r["method"] == "shuffled" and r["seed"] == 2)]  # a seed the control lacks
    for r in records:
        r["metrics"]["adv/pwws/attacked_acc"] = 0.1 * r["seed"] + (0.05 if r["method"] == "cap" else 0.0)
    acc = {(r["method"], r["seed"]): r["metrics"]["test/acc"] for r in records}
    deltas = paired_deltas(records, "test/acc")
    assert list(deltas) == ["cap", "shuffled"] and len(deltas["shuffled"]) == 2
    assert deltas["cap"] == pytest.approx([100 * (acc["cap", s] - acc["baseline", s]) for s in (1, 2, 3)])
    assert paired_deltas(records, "adv/pwws/attacked_acc")["cap"] == pytest.approx([5.0, 5.0, 5.0])
    assert paired_deltas([r for r in records if r["method"] != "baseline"], "test/acc") == {}  # no baseline: nothing


# ------------------------------------------------------------------------------------------------ end to end
def test_reproduce_end_to_end_on_a_tiny_student(tmp_path, tiny_model_dir, shared_data, monkeypatch):
    out = tmp_path / "out"
    argv = ["--datasets", "sst2", "--methods", "baseline", "ig", "--seeds", "1", "2", "--tune-seed", "0",
            "--lambdas", "0.1", "1.0", "--shots", "4", "--epochs", "1", "--val-every", "1", "--student",
            str(tiny_model_dir), "--max-length", "16", "--ig-prior-steps", "2", "--val-batches", "1",
            "--faithfulness-steps", "2", "--faithfulness-rows", "8", "--attack-recipes", "--data-root",
            str(shared_data), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    main(argv)
    select = out / "sst2" / "select"
    for folder in (select / "baseline" / "s0", select / "ig" / "lambda0.1" / "s0", select / "ig" / "lambda1" / "s0"):
        record = json.loads((folder / "metrics.json").read_text())
        assert 0.0 <= record["val_acc"] <= 1.0 and record["metrics"] == {}
        assert not (folder / "test_metrics.json").exists()  # the test split is not read while tuning
    for method, seed in (("baseline", 1), ("baseline", 2), ("ig", 1), ("ig", 2)):
        record = json.loads((out / "sst2" / method / f"s{seed}" / "metrics.json").read_text())
        assert 0.0 <= record["metrics"]["test/acc"] <= 1.0 and record["command"].startswith("lightning fit --config")
        assert "train/ce" in record["train"] and (method == "baseline") == ("train/align" not in record["train"])
        assert record["commit"] and "test/heldout_spearman_ig" in record["metrics"]  # every model, the baseline too
        assert "test/comp_norm_aopc" in record["metrics"] and "test/p_pred" in record["metrics"]
    assert (out / "sst2" / "baseline" / "s1" / "checkpoints" / "best.ckpt").is_file()  # the IG run's reference
    assert not (out / "sst2" / "ig" / "s1" / "checkpoints" / "best.ckpt").exists()
    text = (out / "results.md").read_text()
    assert "λ selection" in text and "Δ Acc vs baseline" in text
    first = (out / "sst2" / "ig" / "s1" / "metrics.json").stat().st_mtime_ns
    main(argv)  # resumes: finished runs are skipped
    assert (out / "sst2" / "ig" / "s1" / "metrics.json").stat().st_mtime_ns == first
    # resumed from archived records (no checkpoint, no cache): a run that still has to train restores its
    # reference, the same model (seeded), without reading the test split; references nobody needs stay absent
    # the final ig runs read the tuning seed's baseline, the selection runs the first reported seed's (a tested run)
    tuning, reported = select / "baseline" / "s0", out / "sst2" / "baseline" / "s1"
    original = torch.load(tuning / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    tested_at = (reported / "test_metrics.json").stat().st_mtime_ns
    for ckpt in out.glob("sst2/**/best.ckpt"):
        ckpt.unlink()
    shutil.rmtree(tmp_path / "cache")
    for folder in (out / "sst2" / "ig" / "s2", select / "ig" / "lambda1" / "s0"):
        (folder / "metrics.json").unlink()
    main(argv)
    restored = torch.load(tuning / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert original.keys() == restored.keys() and all(torch.equal(original[k], restored[k]) for k in original)
    for reference in (tuning, reported):
        record = json.loads((reference / "metrics.json").read_text())
        (restore,) = record["checkpoint_restored"]
        assert restore["weights_sha256"] == record["weights_sha256"] and restore["val_acc"] == record["val_acc"]
    assert not (tuning / "test_metrics.json").exists()
    assert (reported / "test_metrics.json").stat().st_mtime_ns == tested_at  # the restore did not test again
    assert not (out / "sst2" / "baseline" / "s2" / "checkpoints" / "best.ckpt").exists()  # no run reads it
    rerun = json.loads((out / "sst2" / "ig" / "s2" / "metrics.json").read_text())
    assert "test/acc" in rerun["metrics"] and rerun["reference_sha256"] == record_of(tuning)["weights_sha256"]
    monkeypatch.setattr("cap_lightning.reproduce.code_commit", lambda: "other")
    with pytest.raises(SystemExit, match="made by code at commit"):
        main(argv)


def record_of(folder):
    return json.loads((folder / "metrics.json").read_text())


def _fake_fit(staging_ckpt, weights, fail=False):
    """A stand-in for ``run_cli``: writes a checkpoint with ``weights`` where the restore's config points, then
    returns like a finished fit (or raises, like a fit killed after its first checkpoint)."""
    from types import SimpleNamespace

    def fit(argv):
        config = yaml.safe_load(open(argv[-1]))
        assert config["test_after_fit"] is False
        (dirpath,) = [c["init_args"]["dirpath"] for c in config["trainer"]["callbacks"] if "dirpath" in str(c)]
        assert dirpath == str(staging_ckpt.parent)
        staging_ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {"w": weights}}, staging_ckpt)
        if fail:
            raise KeyboardInterrupt("killed")
        return SimpleNamespace(trainer=SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_score=0.5)))

    return fit


def _recorded_reference(tmp_path):
    """The HWU64 seed-1 reference baseline with a finished record (budget, commit c, its weights' SHA-256) and no
    checkpoint: (args, run, folder, weights, record)."""
    from cap_lightning.reproduce import RESTORE_MUST_MATCH, state_dict_sha256

    args = parse_args(_argv(tmp_path))
    reference = Run("hwu64", "baseline", 1, 0.0, "final")
    folder = tmp_path / reference.folder
    folder.mkdir(parents=True)
    weights = torch.arange(6.0).reshape(2, 3)
    torch.save({"state_dict": {"w": weights}}, tmp_path / "original.ckpt")
    budget = {k: getattr(args, k) for k in RESTORE_MUST_MATCH}
    record = {**budget, "commit": "c", "val_acc": 0.5, "weights_sha256": state_dict_sha256(tmp_path / "original.ckpt")}
    (folder / "metrics.json").write_text(json.dumps(record))
    return args, reference, folder, weights, record


def test_a_restore_that_dies_leaves_no_checkpoint_and_other_weights_or_budgets_are_refused(tmp_path, monkeypatch):
    from cap_lightning.reproduce import restore_reference

    args, reference, folder, weights, record = _recorded_reference(tmp_path)
    best, staging = folder / "checkpoints" / "best.ckpt", folder / "checkpoints" / ".restore" / "best.ckpt"
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights, fail=True))
    with pytest.raises(KeyboardInterrupt):
        restore_reference(reference, args, "c")
    assert not best.exists() and "checkpoint_restored" not in record_of(folder)  # nothing half-done is trusted
    reader = tmp_path / "hwu64" / "select" / "hybrid_mean" / "lambda0.1" / "s0"  # a finished run read the original
    reader.mkdir(parents=True)
    (reader / "metrics.json").write_text(json.dumps({"reference_sha256": record["weights_sha256"]}))
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights + 1))
    with pytest.raises(SystemExit, match=r"other weights than the one its dependants read .*1 finished run"):
        restore_reference(reference, args, "c")
    assert not best.exists()
    args.allow_retrained_references = True
    restore_reference(reference, args, "c")  # accepted when asked, and recorded as what it is
    (entry,) = record_of(folder)["checkpoint_restored"]
    assert best.is_file() and entry["weights_sha256"] != record["weights_sha256"] and not staging.exists()
    best.unlink()
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights))
    with pytest.raises(SystemExit, match=r"budget differs.*'epochs': \(15, 3\)"):
        restore_reference(reference, parse_args([*_argv(tmp_path), "--epochs", "3"]), "c")
    with pytest.raises(SystemExit, match="from commit c, this is d"):
        restore_reference(reference, args, "d")
    restore_reference(reference, args, "c")
    assert [e["weights_sha256"] == record["weights_sha256"] for e in record_of(folder)["checkpoint_restored"]] == [
        False, True]  # fmt: skip


def test_other_weights_that_no_finished_run_read_are_accepted_and_then_guarded(tmp_path, monkeypatch):
    """A retrain on another machine is not bit-identical: with no dependant finished, nothing read the lost
    weights, so the new ones are taken (and recorded); once a run read them, a third version is refused."""
    from cap_lightning.reproduce import restore_reference, state_dict_sha256

    args, reference, folder, weights, record = _recorded_reference(tmp_path)
    other = tmp_path / "hwu64" / "baseline" / "s2"  # reads another reference (the tuning seed's): not a dependant
    other.mkdir(parents=True)
    (other / "metrics.json").write_text(json.dumps({"reference_sha256": "f" * 64}))
    best, staging = folder / "checkpoints" / "best.ckpt", folder / "checkpoints" / ".restore" / "best.ckpt"
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights + 1))
    restore_reference(reference, args, "c")
    (entry,) = record_of(folder)["checkpoint_restored"]
    assert best.is_file() and entry["weights_sha256"] == state_dict_sha256(best) != record["weights_sha256"]
    reader = tmp_path / "hwu64" / "select" / "cap" / "lambda0.1" / "s0"  # a run then read the restored weights
    reader.mkdir(parents=True)
    (reader / "metrics.json").write_text(json.dumps({"reference_sha256": entry["weights_sha256"]}))
    best.unlink()
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights + 2))
    with pytest.raises(SystemExit, match="1 finished run"):
        restore_reference(reference, args, "c")
    assert not best.exists()
    monkeypatch.setattr("lmcore.cli.run_cli", _fake_fit(staging, weights + 1))
    restore_reference(reference, args, "c")  # the version that run read comes back: accepted
    assert state_dict_sha256(best) == entry["weights_sha256"]


def _argv(out):
    return ["--datasets", "hwu64", "--methods", "baseline", "hybrid_mean", "--out", str(out)]


def test_only_runs_with_an_ig_or_lime_source_read_the_reference():
    from cap_lightning.reproduce import reads_reference

    cap_only = parse_args(["--datasets", "hwu64", "--methods", "baseline", "cap"])
    grid = parse_args(["--datasets", "hwu64"])
    assert not reads_reference(Run("hwu64", "cap", 0, 0.1, "select"), cap_only)
    assert not reads_reference(Run("hwu64", "baseline", 1, 0.0, "final"), cap_only)  # held-out priors: CAP only
    assert reads_reference(Run("hwu64", "baseline", 1, 0.0, "final"), grid)  # held-out IG / LIME / Hybrid priors
    assert reads_reference(Run("hwu64", "hybrid_mean", 0, 0.1, "select"), grid)
    assert not reads_reference(Run("hwu64", "cap", 0, 0.1, "select"), grid)


def test_report_only_collects_the_finished_runs_in_plan_order_and_trains_nothing(tmp_path):
    out = tmp_path / "out"
    argv = ["--datasets", "hwu64", "--methods", "baseline", "cap", "--seeds", "1", "2", "--lambdas", "0.1", "1",
            "--out", str(out)]  # fmt: skip
    args = parse_args(argv)

    def write(run, val_acc=None, acc=None):
        folder = out / run.folder
        folder.mkdir(parents=True, exist_ok=True)
        metrics = {} if acc is None else {"test/acc": acc}
        record = {"dataset": run.dataset, "method": run.method, "seed": run.seed, "stage": run.stage,
                  "prior_weight": run.prior_weight, "val_acc": val_acc, "metrics": metrics, "fit_seconds": 10.0,
                  "commit": "old"}  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(record))

    write(Run("hwu64", "baseline", 0, 0.0, "select"), val_acc=0.80)
    for seed, acc in ((1, 0.81), (2, 0.83)):
        write(Run("hwu64", "baseline", seed, 0.0, "final"), acc=acc)
    write(Run("hwu64", "cap", 0, 0.1, "select"), val_acc=0.82)
    write(Run("hwu64", "cap", 1, 1.0, "final"), acc=0.5)  # λ not chosen yet: not read; then not the chosen λ
    records, selections, finished, planned, seconds = collect_finished(args)
    assert [(r["method"], r["seed"]) for r in records] == [("baseline", 1), ("baseline", 2)]
    assert selections[0]["chosen"] is None and selections[0]["baseline_val"] == 0.80 and finished == 4
    write(Run("hwu64", "cap", 0, 1.0, "select"), val_acc=0.79)
    records, selections, finished, planned, seconds = collect_finished(args)
    assert selections[0]["chosen"] == {"cap": 0.1} and finished == 5 and len(records) == 2
    write(Run("hwu64", "cap", 1, 0.1, "final"), acc=0.84)
    records, selections, finished, planned, seconds = collect_finished(args)
    assert selections[0]["chosen"] == {"cap": 0.1} and finished == 6 and planned == 7 and seconds == 60.0
    assert [(r["method"], r["seed"], r["metrics"]["test/acc"]) for r in records if r["method"] == "cap"] == [
        ("cap", 1, 0.84)
    ]
    main([*argv, "--report-only"])
    text = (out / "results.md").read_text()
    assert "PARTIAL: 6 of 7 planned runs finished" in text and "Commit old" in text
    assert "time summed over the runs 1m00s" in text  # 6 runs × 10 s, not called a wall time
    assert not (out / "hwu64" / "cap" / "s2").exists()  # nothing was trained
    write(Run("hwu64", "cap", 2, 0.1, "final"), acc=0.85)  # the last planned run: the report is complete
    main([*argv, "--report-only"])
    text = (out / "results.md").read_text()
    assert "PARTIAL" not in text and "all 7 planned runs" in text and "summed over the runs 1m10s" in text


def test_report_only_without_a_finished_run_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--datasets", "hwu64", "--methods", "baseline", "--out", str(tmp_path / "empty"), "--report-only"])
    assert exit_.value.code == 2
    assert f"no finished run under {tmp_path / 'empty'}" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "results.md").exists()


def test_a_finished_run_at_another_lambda_is_refused_not_reused(tmp_path):
    """A reported run's folder has no λ in its name: if the grid's λ changed (other --lambdas, other scores), the
    record on disk was trained at another λ and must not stand in for this run."""
    from cap_lightning.reproduce import run_one

    args = parse_args(["--datasets", "hwu64", "--methods", "baseline", "cap", "--out", str(tmp_path)])
    run = Run("hwu64", "cap", 1, 0.1, "final")
    folder = tmp_path / run.folder
    folder.mkdir(parents=True)
    record = {"dataset": "hwu64", "method": "cap", "seed": 1, "stage": "final", "prior_weight": 1.0, "commit": "c",
              "metrics": {}, "fit_seconds": 1.0}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"λ=1 .* λ=0.1"):
        run_one(run, args, "c")
    assert run_one(Run("hwu64", "cap", 1, 1.0, "final"), args, "c") == (record, False)


def test_fit_seconds_are_a_median_with_range_so_one_run_that_scored_shared_priors_does_not_set_the_cell():
    records = _records((("baseline", 0.60),))
    for r, seconds in zip(records, (7000.0, 400.0, 410.0)):  # seed 1 also scored the held-out priors, cached after
        r["fit_seconds"] = seconds
    lines = dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}})
    (row,) = [line for line in lines if line.startswith("| baseline |")]
    assert row.rstrip(" |").endswith("| 410 (400–7000)")
    assert any("Fit s" in line and "median" in line for line in lines if line.startswith("Notes"))


def test_attacks_without_textattack_are_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr("cap_lightning.adversarial.environment.textattack_available", lambda: False)
    monkeypatch.setattr("lmcore.cli.run_cli", lambda *a, **k: pytest.fail("trained before refusing"))
    monkeypatch.setattr("cap_lightning.reproduce.step_seconds", lambda *a, **k: pytest.fail("timed before refusing"))
    with pytest.raises(SystemExit, match=r"--attack-recipes \['deepwordbug'\].*make install-adversarial"):
        main([*_argv(tmp_path), "--attack-recipes", "deepwordbug"])
    assert not any(tmp_path.iterdir())


def test_the_notes_give_each_methods_share_of_all_zero_prior_rows_and_of_teacher_kept_rows():
    records = _records((("baseline", 0.60), ("cap", 0.62), ("hybrid_mean", 0.62)))
    for r in records:
        if r["method"] == "cap":
            r["train"] |= {"train/zero_prior_rows": 0.1 * r["seed"], "train/teacher_kept_rows": 0.5}
        elif r["method"] == "hybrid_mean":
            r["train"] |= {"train/zero_prior_rows": 0.0}
    lines = dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}})
    (notes,) = [line for line in lines if line.startswith("Notes")]
    assert "training rows with an all-zero prior (left out of the alignment): cap 20 %, hybrid_mean 0 %" in notes
    assert "training rows with a prior kept by teacher gating: cap 50 %" in notes


def test_median_range_of_an_even_count_is_the_mean_of_the_middle_two():
    from cap_lightning.reproduce_report import median_range

    assert median_range([400.0, 7000.0, 410.0, 420.0]) == "415 (400–7000)"
    assert median_range([5.4]) == "5" and median_range([]) == "–"


def test_a_partial_tables_holm_family_is_the_planned_one_with_missing_comparisons_at_p_1():
    """An interim report must not read a difference as surviving Holm over a family that will grow: comparisons the
    plan has and the records do not yet count as p = 1, so p_Holm is what the full family gives at best."""
    records = _records((("baseline", 0.60), ("shuffled", 0.60), ("hybrid_mean", 0.65)))
    groups = {m: [r for r in records if r["method"] == m] for m in ("baseline", "shuffled", "hybrid_mean")}
    pairs = [("shuffled", "baseline"), ("hybrid_mean", "baseline"), ("hybrid_mean", "shuffled")]
    raw = [paired_t_p_value([100 * r["metrics"]["test/acc"] for r in groups[a]],
                            [100 * r["metrics"]["test/acc"] for r in groups[b]]) for a, b in pairs]  # fmt: skip
    planned = ["baseline", "cap", "hybrid_mean", "uniform", "shuffled"]  # cap and uniform vs baseline: not on disk
    lines = dataset_table(records, {"dataset": "hwu64", "scores": {}, "chosen": {}}, methods=planned)
    (row,) = [line for line in lines if line.startswith("| hybrid_mean |")]
    for cell, q in zip(row.split(" | ")[4:6], holm([*raw[1:], raw[0], 1.0, 1.0])):
        assert cell.endswith(f"p_Holm {q:.2g}")
    family = Comparisons(planned=5)
    for a, b in pairs:
        family.add((a, b), groups[a], groups[b], "test/acc")
    assert family.cells()[("hybrid_mean", "baseline")].endswith(f"p_Holm {holm([*raw, 1.0, 1.0])[1]:.2g}")
    too_few = Comparisons(planned=2)
    for a, b in pairs:
        too_few.add((a, b), groups[a], groups[b], "test/acc")
    with pytest.raises(ValueError, match="3 comparisons tested, 2 planned"):
        too_few.cells()


def test_the_verdict_reads_holm_as_the_table_does():
    """The verdict and the table cell must agree: an unadjusted interval that excludes 0 but does not survive Holm
    over the table's family is said to, in the verdict too."""
    base = [{"seed": s, "method": "baseline", "metrics": {"test/acc": 0.6}} for s in (1, 2, 3, 4, 5)]
    lifts = {
        "hybrid_mean": (0.9, 0.1, 1.4, 0.3, 1.0),
        "cap": (2.1, 1.9, 2.3, 1.7, 2.0),
        "uniform": (0.8, -0.3, 1.3, 0.0, 1.2),
    }
    by_method = {"baseline": base}
    for name, lift in lifts.items():
        by_method[name] = [{"seed": s, "method": name, "metrics": {"test/acc": 0.6 + d / 100}}
                           for s, d in zip((1, 2, 3, 4, 5), lift)]  # fmt: skip
    verdict = verdict_line(by_method)
    assert "test accuracy vs baseline: higher (Holm: no difference) (+0.74" in verdict


def test_held_out_agreement_with_each_methods_own_prior_is_a_paired_difference_to_the_baseline():
    """Did the alignment move the model's attributions towards its prior on new texts? Per method, ρ with the prior
    it was aligned to (controls: the prior they stand in for), paired with the baseline's ρ with that prior."""
    from cap_lightning.reproduce_report import agreement_table

    records = _records((("baseline", 0.60), ("cap", 0.61), ("shuffled", 0.60), ("hybrid_mean", 0.62)))
    for r in records:
        lift = {"baseline": 0.0, "cap": 0.05, "shuffled": -0.1, "hybrid_mean": 0.02}[r["method"]]
        r["metrics"].update({"test/heldout_spearman_cap": 0.3 + lift + 0.01 * r["seed"],
                             "test/heldout_spearman_hybrid_mean": 0.5 + lift + 0.003 * r["seed"] ** 2})  # fmt: skip
    by_method = {m: [r for r in records if r["method"] == m] for m in ("baseline", "cap", "shuffled", "hybrid_mean")}
    lines = agreement_table(by_method, "hybrid_mean")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert rows["cap"][1] == "cap" and rows["cap"][2].startswith("+5.00 [+5.00, +5.00]")  # its own prior
    assert rows["shuffled"][1] == "hybrid_mean" and rows["shuffled"][2].startswith("-10.00")  # the prior it shuffles
    assert rows["hybrid_mean"][1] == "hybrid_mean" and rows["hybrid_mean"][2].startswith("+2.00")
    assert "baseline" not in rows
    assert agreement_table({"baseline": by_method["baseline"]}, "hybrid_mean") == []


def test_cap_alone_against_the_uniform_control_is_paired_and_says_whether_the_two_lambdas_match():
    """The teacher's content free of the few-shot sample's labels: CAP alone − uniform, paired over seeds, on
    accuracy and on held-out ρ with the CAP prior, descriptive (outside the Holm family), and confounded when the
    two ran at different λ."""
    from cap_lightning.reproduce_report import teacher_content_table

    records = _records((("baseline", 0.60), ("cap", 0.63), ("uniform", 0.60)))
    for r in records:
        r["metrics"]["test/heldout_spearman_cap"] = 0.3 + (0.04 if r["method"] == "cap" else 0.0) - 0.01 * r["seed"]
    by_method = {m: [r for r in records if r["method"] == m] for m in ("baseline", "cap", "uniform")}
    lines = teacher_content_table(by_method)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    acc, rho = rows["test accuracy"], rows["held-out ρ(IG, cap)"]
    assert acc[1] == "1,2,3" and acc[2] == "0.1 / 0.1 (matched)"
    assert acc[3].startswith("+3.") and "higher" in acc[3]  # +3.1, +3.2, +3.3: an interval above 0
    assert rho[3].startswith("+4.00 [+4.00, +4.00] no difference")  # equal on all 3 seeds: the sign test, n = 3
    assert "not Holm-adjusted" in " ".join(lines)
    for r in by_method["uniform"]:
        r["prior_weight"] = 0.3
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in teacher_content_table(by_method)
            if line.startswith("| ")}  # fmt: skip
    assert rows["test accuracy"][2] == "0.1 / 0.3 (**not matched**: λ confounds the difference)"
    assert teacher_content_table({"baseline": by_method["baseline"], "cap": by_method["cap"]}) == []
    uniform_one_seed = {"cap": by_method["cap"], "uniform": by_method["uniform"][:1]}
    assert "(n=1)" in " ".join(teacher_content_table(uniform_one_seed))
