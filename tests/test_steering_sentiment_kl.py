"""The sentiment task in the matched-KL comparison (``steering.reproduce`` on continuations), on tiny models.

Invariants: the dev sweep of continuations with a deterministic toy judge gives at α = 0 exactly the base row (value,
judge metrics, fluency, KL 0), and the base value is the toy judge's mean on the base continuations; the base
continuations are generated once and reused; a budgeted choice never exceeds its budget; ``main()`` on a tiny Llama
and a tiny exported judge writes the results files with fluency and p_positive / positive_rate statistics (McNemar
on the 0 / 1 one), then resumes from its records; permuting the test prompts and flipping their labels leaves the
frozen selection unchanged; a continuation task without a judge is refused before any work.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
import yaml

from steering.budget import select_at_budgets
from steering.data import split_indices
from steering.dev_scoring import ContinuationJudging, dev_targets
from steering.extract import GrainsConfig
from steering.fitting import example_deltas
from steering.sweep import base_dev_scores, sweep
from steering.tasks import ContinuationExample
from steering.tasks.continuations import judged_continuations
from steering.writer import merge_predictions, save_deltas
from tests.makefile import MAKEFILE, makefile_variables, reproduce_commands
from tests.tiny_lm import LM_WORDS, save_tiny_lm, tiny_pairs

PROMPTS = ["q what is", "the sky is blue and", "cats", "is water wet or dry what do people say", "q fire is"]
N_ROWS, N_STEER, N_DEV, FOLDS = 20, 4, 4, 2
TASK_ARGS = dict(prompt_words=2, pair_words=4, min_words=3, max_words=12, template="q {text}")


def _toy_judge(texts):
    """p(positive) = (1 + #"true" + #"yes") / (2 + #words): deterministic, graded, label 1 = positive."""
    out = []
    for t in texts:
        words = t.split()
        p = (1 + sum(w in ("true", "yes") for w in words)) / (2 + len(words))
        out.append([1 - p, p])
    return torch.tensor(out, dtype=torch.float64)


def _dev() -> list[ContinuationExample]:
    return [ContinuationExample(p, "q a", " yes true", " no false", {"row": i}) for i, p in enumerate(PROMPTS)]


def _deltas(model, tok, path: Path) -> Path:
    cfg = GrainsConfig(ig_steps=4, internal_batch_size=4)
    layers, deltas, *_ = example_deltas(model, tok, tiny_pairs(), "grains", [0, 1, 2], cfg, [2], batch_size=3)
    merged = merge_predictions([{"index": list(range(3)), "layers": layers, "deltas": deltas}], expected=3)
    return save_deltas(path, merged, {"method": "grains"})


def test_sweep_of_continuations_alpha_zero_is_the_base_and_budgets_hold(model_tok, tmp_path, monkeypatch):
    import steering.dev_scoring as dev_scoring

    model, tok = model_tok
    deltas = _deltas(model, tok, tmp_path / "d.deltas.safetensors")
    judging = ContinuationJudging(_toy_judge, 1, n_tokens=5, batch_size=2)
    dev = _dev()
    assert dev_targets(dev) == ["p_positive", "positive_rate"]
    rows = sweep(model, tok, deltas, "grains", dev, [[1], [1, 2]], [0.0, 4.0, 50.0], target="p_positive",
                 batch_size=2, judging=judging)  # fmt: skip
    base = rows[0]
    expected = judged_continuations(model, tok, PROMPTS, _toy_judge, 1, 5, 2)
    assert base["method"] == "base" and base["value"] == pytest.approx(float(_toy_judge(expected.texts)[:, 1].mean()))
    assert base["positive_rate"] == float(expected.positive_rate.mean())
    assert base["continuation_ppl"] == pytest.approx(math.exp(float(expected.nll.mean())))
    for r in rows[1:]:
        assert r["kl"] >= 0 and set(r) >= {"p_positive", "positive_rate", "continuation_ppl", "continuation_tokens"}
        assert r["value"] == r["p_positive"]
        if r["alpha"] == 0.0:  # the base model, through the steering path
            assert r["kl"] == pytest.approx(0.0, abs=1e-6)
            for name in ("value", "p_positive", "positive_rate", "continuation_ppl", "continuation_tokens"):
                assert r[name] == base[name]
    strong = [r for r in rows[1:] if r["alpha"] == 50.0]
    assert any(r["kl"] > 0 for r in strong)

    budgets = sorted({r["kl"] for r in rows[1:]})[1:3]
    for c in select_at_budgets({"grains": rows}, budgets):
        within = [r for r in rows[1:] if r["kl"] <= c["budget"]]
        assert c["chosen"]["kl"] <= c["budget"] and c["chosen"]["value"] == max(r["value"] for r in within)

    # the base row passed in is reused: one generation per steered setting, none for the base model
    calls = []
    real = dev_scoring.judged_continuations
    monkeypatch.setattr(dev_scoring, "judged_continuations", lambda *a, **k: calls.append(1) or real(*a, **k))
    given = base_dev_scores(model, tok, dev, "positive_rate", 2, judging)
    assert len(calls) == 1 and given["value"] == base["positive_rate"]
    again = sweep(model, tok, deltas, "caa", dev, [[1]], [4.0], target="positive_rate", batch_size=2,
                  judging=judging, base=given)  # fmt: skip
    assert len(calls) == 2 and again[0]["value"] == base["positive_rate"]
    with pytest.raises(ValueError, match="need judging="):
        sweep(model, tok, deltas, "grains", dev, [[1]], [4.0], target="p_positive")
    with pytest.raises(ValueError, match="target 'mc2' is not a target of the dev examples"):
        sweep(model, tok, deltas, "grains", dev, [[1]], [4.0], target="mc2", judging=judging)


# ---- end to end through python -m steering.reproduce ---------------------------------------------------------------
def _write_sst2(root: Path, test_rows: list[tuple[str, int]]) -> Path:
    rng = random.Random(1)
    (root / "SST-2").mkdir(parents=True, exist_ok=True)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(LM_WORDS) for _ in range(n)) + " ."

    train = [(sentence(rng.randint(3, 10)), i % 2) for i in range(4 * N_ROWS + 8)]
    for name, rows in (("test", test_rows), ("train", train)):
        lines = ["sentence\tlabel", *(f"{s} \t{y}" for s, y in rows)]
        (root / "SST-2" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return root


def _test_rows() -> list[tuple[str, int]]:
    rng = random.Random(0)  # every sentence has >= prompt_words + 2 words: row j of the task is line j
    return [(" ".join(rng.choice(LM_WORDS) for _ in range(rng.randint(4, 8))) + " .", i % 2) for i in range(N_ROWS)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny import save_tiny_classifier

    root = tmp_path_factory.mktemp("sentiment_kl")
    judge = save_tiny_classifier(root / "judge", num_labels=2)
    config = json.loads((judge / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "negative", "1": "positive"}, {"negative": 0, "positive": 1}
    (judge / "config.json").write_text(json.dumps(config))
    return root, save_tiny_lm(root / "model"), judge, _write_sst2(root / "sst2", _test_rows())


def _config(root: Path, model: Path, sst2: Path, name: str = "c.yaml") -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(root / "run")},
        "model": {"class_path": "steering.SteeringModule", "init_args": {
            "model_path": str(model), "layers": [0, 1, 2], "grains": {"top_k": 2, "ig_steps": 4,
            "internal_batch_size": 4}, "max_new_tokens": 4, "score_batch_size": 4, "judge_model": None}},
        "data": {"class_path": "steering.SteeringDataModule", "init_args": {
            "task": "sentiment", "task_args": {"data_dir": str(sst2), **TASK_ARGS}, "n_steer": N_STEER,
            "n_dev": N_DEV, "batch_size": 2, "eval_batch_size": 4}},
    }  # fmt: skip
    path = root / name
    path.write_text(yaml.safe_dump(config))
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_sentiment_matched_kl_end_to_end_and_resumed(tiny, monkeypatch):
    from steering.reproduce import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root, model, judge, sst2 = tiny
    out, methods, budgets = root / "out", ["grains", "caa", "random_direction"], [1e-9, 100.0]
    argv = ["--config", str(_config(root, model, sst2)), "--out", str(out), "--methods", *methods,
            "--layer-groups", "1-2", "--alphas", "2", "8", "--kl-budgets", *map(str, budgets),
            "--split-seeds", "0", "1", "--resamples", "100", f"--model.init_args.judge_model={judge}"]  # fmt: skip
    res = main(argv)

    for seed in range(FOLDS):
        folder = out / f"seed{seed}"
        sel = json.loads((folder / "selection.json").read_text())
        assert sel["target"] == "p_positive" and json.loads((folder / "references.json").read_text()) == {}
        bases = [rows[0] for rows in sel["sweeps"].values()]
        assert all(b == bases[0] for b in bases)  # one base scoring per split seed, shared by every method
        for c in sel["choices"]:
            if c["budget"] == 1e-9:
                assert c["chosen"] is None  # a random tiny LM moves the KL at α 2
                continue
            chosen = c["chosen"]
            assert chosen["kl"] <= c["budget"] and chosen["continuation_ppl"] > 1
            rows = [r for r in sel["sweeps"][c["method"]] if r["method"] != "base"]
            assert chosen["value"] == max(r["value"] for r in rows)
        for rec in folder.glob("*.test.json"):
            per = json.loads(rec.read_text())["per_example"]
            assert {"steered/p_positive", "steered/positive_rate", "steered/continuation_nll"} <= set(per)
    rows = _csv(out / "results.csv")
    assert len(rows) == len(budgets) * (1 + len(methods)) * (FOLDS + 1)
    for r in rows:
        if r["note"]:
            assert float(r["budget"]) == 1e-9 and r["method"] != "base"
            continue
        assert float(r["cont_ppl"]) > 1 and 0 <= float(r["p_positive"]) <= 1 and float(r["cont_tokens"]) >= 1
        if r["method"] != "base":
            assert r["d_positive_rate_base_p_mcnemar"] != "" and r["d_p_positive_base_verdict"] != ""
            assert float(r["dev_cont_ppl"]) > 1
    pooled = [r for r in rows if r["split_seed"] == "pooled" and r["method"] == "base"]
    assert int(pooled[0]["n_test"]) == N_ROWS - N_STEER and "mc1" not in rows[0] and "mc2" not in rows[0]
    md = (out / "results.md").read_text()
    assert "Score-free references (constant scorer, longest answer): skipped" in md and "test cont. ppl" in md
    assert "p_positive − base" in md and "positive_rate − CAA" in md
    assert (out / "pareto_seed0.png").is_file() and res["summary"]["resumed"] == []

    again = main(argv)
    n_tests = sum(1 for _ in out.glob("seed*/*.test.json"))
    assert len(again["summary"]["resumed"]) == len(methods) * (1 + FOLDS) + n_tests
    assert _csv(out / "results.csv") == rows


def test_selection_ignores_permuted_test_prompts_and_labels(tiny, monkeypatch):
    """Shuffling the sentences of split seed 0's test rows among themselves and flipping their labels leaves its
    frozen selection unchanged (the sweep reads the dev rows only)."""
    from steering.reproduce import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root, model, judge, sst2 = tiny
    test = split_indices(N_ROWS, N_STEER, N_DEV, None, 0, 0, FOLDS)["test"]
    rows = _test_rows()
    shuffled = test[1:] + test[:1]
    permuted = list(rows)
    for i, j in zip(test, shuffled):
        permuted[i] = (rows[j][0], 1 - rows[j][1])
    other = _write_sst2(root / "sst2_permuted", permuted)
    assert (other / "SST-2" / "test.tsv").read_text() != (sst2 / "SST-2" / "test.tsv").read_text()
    selections = []
    for name, data in (("a", sst2), ("b", other)):
        out = root / f"select_{name}"
        main(["--config", str(_config(root, model, data, f"{name}.yaml")), "--out", str(out), "--methods", "grains",
              "caa", "--layer-groups", "1-2", "2", "--alphas", "2", "8", "--kl-budgets", "0.05", "100",
              "--split-seeds", "0", "--folds", str(FOLDS), "--select-only", "--target", "positive_rate",
              f"--model.init_args.judge_model={judge}"])  # fmt: skip
        assert not list(out.rglob("*.test.json"))
        selections.append(json.loads((out / "seed0" / "selection.json").read_text()))
    assert selections[0] == selections[1] and selections[0]["target"] == "positive_rate"


def test_a_continuation_task_without_a_judge_is_refused_before_any_work(tiny, tmp_path, capsys):
    from steering.reproduce import main

    root, model, _, sst2 = tiny
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(_config(root, model, sst2)), "--out", str(tmp_path / "o"), "--layer-groups", "1"])
    assert exit_.value.code == 2
    assert re.search(r"need a judge classifier, pass --model.init_args.judge_model=", capsys.readouterr().err)
    assert not list((tmp_path / "o").glob("*.safetensors"))
    with pytest.raises(SystemExit):
        main(["--config", str(_config(root, model, sst2)), "--out", str(tmp_path / "o"), "--target", "mc2"])
    assert "--target 'mc2' is not a target of the dev examples ['p_positive', 'positive_rate']" in (
        capsys.readouterr().err
    )


def test_make_steer_sentiment_options_parse_and_fit_sst2(shared_data):
    """The Makefile's command passes the option checks, names a judge, and its split sizes fit the SST-2 rows."""
    from steering.reproduce import _check, _parser
    from steering.tasks import load_task

    repo = Path(__file__).resolve().parents[1]
    argv = reproduce_commands("smollm2_sentiment_matched_kl")[0]
    p = _parser()
    a, overrides = p.parse_known_args(argv)
    _check(p, a)
    assert {"grains", "caa", "random_direction"} <= set(a.methods) and a.target == "p_positive"
    assert a.budgets == sorted(a.budgets) and len(a.seeds) >= 3  # the bar: 3+ split seeds
    options = dict(o.removeprefix("--").split("=", 1) for o in overrides)
    assert options["model.init_args.judge_model"] == makefile_variables(MAKEFILE.read_text())["SENTIMENT_JUDGE"]
    config = yaml.safe_load((repo / a.config).read_text())["data"]["init_args"]
    rows = load_task("sentiment", None, data_dir=str(shared_data / "sst2"), **{
        k: v for k, v in config["task_args"].items() if k != "data_dir"})  # fmt: skip
    n_dev, n_test = (yaml.safe_load(options[f"data.init_args.{k}"]) for k in ("n_dev", "n_test"))
    folds = a.folds or len(a.seeds)
    tested = 0
    for seed in a.seeds:  # raises if a fold or the dev pool is too small
        sizes = {k: len(v) for k, v in split_indices(len(rows), config["n_steer"], n_dev, n_test, config["seed"],
                                                     seed, folds).items()}  # fmt: skip
        fold = (len(rows) - config["n_steer"]) // folds  # n_test null: the whole fold
        assert sizes["steer"] == config["n_steer"] and sizes["dev"] == n_dev
        assert sizes["test"] == n_test if n_test is not None else fold <= sizes["test"] <= fold + 1
        tested += sizes["test"]
    assert tested >= 300  # the powered design: 300+ distinct test prompts pooled


def test_the_sentiment_null_target_is_the_main_command_plus_the_draws():
    """``make steer-sentiment`` stops before the null draws (the 2 h cut); ``make steer-sentiment-null`` is the same
    command in the same folder plus the draws, so it reuses every record of the first."""
    from steering.reproduce import _check, _parser

    commands = reproduce_commands("smollm2_sentiment_matched_kl")
    main, null = commands
    p = _parser()
    first, second = (p.parse_known_args(argv) for argv in (main, null))
    _check(p, first[0])
    _check(p, second[0])
    assert first[0].null_draws == 0 and second[0].null_draws >= 10 and second[0].null_budgets
    assert null[: len(main)] == main and first[1] == second[1]


def test_the_pre_registered_arms_parse_and_sweep_only_extracted_k():
    """``make steer-sentiment-arms`` (docs/grains.md §3.2): two runs, every --ks value extracted, arm A answer-aware,
    split seeds 0 and 1 as registered, the same options as ``make steer-sentiment`` otherwise."""
    from steering.reproduce import _check, _parser

    commands = reproduce_commands("steer_smollm2_sentiment")
    main = next(a for a in commands if "_arm_" not in a[a.index("--out") + 1])
    arms = [a for a in commands if "_arm_" in a[a.index("--out") + 1]]
    assert [a[a.index("--out") + 1] for a in arms] == ["runs/steer/smollm2_sentiment_arm_k",
                                                       "runs/steer/smollm2_sentiment_arm_answer"]  # fmt: skip
    p = _parser()
    base, base_over = p.parse_known_args(main)
    _check(p, base)
    for argv in arms:
        a, overrides = p.parse_known_args(argv)
        _check(p, a)
        options = dict(o.removeprefix("--").split("=", 1) for o in overrides)
        extracted = {10, *yaml.safe_load(options["model.init_args.extra_top_k"])}
        assert sorted(a.ks) == [2, 3, 5, 10] and set(a.ks) <= extracted
        assert (a.methods, a.alphas, a.budgets) == (base.methods, base.alphas, base.budgets)
        assert a.seeds == [0, 1] and set(a.seeds) <= set(base.seeds)  # as registered: split seeds 0 and 1
        assert set(base_over) <= set(overrides)
    answer = dict(o.removeprefix("--").split("=", 1) for o in p.parse_known_args(arms[1])[1])
    assert answer["model.init_args.grains.position"] == "last" and answer["model.init_args.grains.include_response"]
