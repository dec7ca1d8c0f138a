import json

import pytest
import yaml

from cap_lightning.reproduce import main, parse_args, plot, run_config, summarise
from lmcore.cli import run_cli


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
    config = run_config("hwu64", 1, "hybrid_max", args)
    (prior_cb,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("PriorCacheCallback")]
    prior = prior_cb["init_args"]["prior"]["init_args"]
    assert prior["agg"] == "max"
    assert [s["class_path"].rsplit(".", 1)[1] for s in prior["sources"]] == ["ClassAwarePrior", "LIMEPrior", "IGPrior"]
    assert prior["sources"][2]["init_args"]["model_path"].endswith("hwu64/baseline/s1/checkpoints/best.ckpt")
    assert config["seed_everything"] == 1 and config["data"]["init_args"]["seed"] == 1


def test_every_run_config_type_checks_as_a_lightning_config(tmp_path, capsys):
    args = parse_args(["--methods", "baseline", "ig", "lime", "cap", "hybrid_mean", "hybrid_max"])
    for method in args.methods:
        path = tmp_path / f"{method}.yaml"
        path.write_text(yaml.safe_dump(run_config("banking77", 0, method, args)))
        try:
            run_cli(["fit", "--config", str(path), "--print_config"])
        except SystemExit as e:
            assert e.code in (0, None), capsys.readouterr().err
    capsys.readouterr()


def test_reproduce_end_to_end_on_a_tiny_student(tmp_path, tiny_model_dir, shared_data):
    out = tmp_path / "out"
    argv = ["--datasets", "sst2", "--methods", "baseline", "ig", "--seeds", "0", "--shots", "4", "--epochs", "1",
            "--student", str(tiny_model_dir), "--max-length", "16", "--ig-prior-steps", "2", "--val-batches", "1",
            "--faithfulness-max-batches", "1", "--faithfulness-steps", "2", "--data-root", str(shared_data),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    main(argv)
    for method in ("baseline", "ig"):
        record = json.loads((out / "sst2" / method / "s0" / "metrics.json").read_text())
        assert 0.0 <= record["metrics"]["test/acc"] <= 1.0 and record["command"].startswith("lightning fit --config")
    assert (out / "sst2" / "baseline" / "s0" / "checkpoints" / "best.ckpt").is_file()  # the IG run's reference
    assert not (out / "sst2" / "ig" / "s0" / "checkpoints" / "best.ckpt").exists()
    assert {"results.md", "results.csv", "results.png"} <= {p.name for p in out.iterdir()}
    first = (out / "sst2" / "ig" / "s0" / "metrics.json").stat().st_mtime_ns
    main(argv)  # resumes: finished runs are skipped
    assert (out / "sst2" / "ig" / "s0" / "metrics.json").stat().st_mtime_ns == first


def test_robustness_columns_appear_when_attacked_splits_were_scored():
    records = _records()
    for r in records:
        r["metrics"] |= {"adv/deepwordbug/attacked_acc": 0.3, "adv/deepwordbug/attack_success_rate": 0.5}
    text, _ = summarise(records)
    assert "deepwordbug/acc under attack" in text and "| 30.00 ± 0.00 | 50.00 ± 0.00 |" in text
