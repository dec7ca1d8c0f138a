"""``python -m steering.reproduce`` end to end on a tiny Llama: predict → frozen dev selection per KL budget → test
of exactly the chosen settings → tables, Pareto plots, summary; resumed from its records; test labels never reach
the selection; bad options refused before any work."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steering.data import split_indices
from tests.makefile import reproduce_commands
from tests.tiny_lm import save_tiny_lm, write_tiny_pairs

REPO = Path(__file__).resolve().parents[1]
N_ROWS, N_STEER, N_DEV, FOLDS = 30, 6, 6, 3
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("matched")
    return root, save_tiny_lm(root / "model"), write_tiny_pairs(root / "pairs.jsonl", N_ROWS)


def _config(root: Path, model: Path, pairs: Path, name: str = "c.yaml") -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(root / "run")},
        "model": {"class_path": "steering.SteeringModule", "init_args": {
            "model_path": str(model), "layers": [0, 1, 2], "extra_top_k": [1],
            "grains": {"top_k": 2, "ig_steps": 4, "internal_batch_size": 4}}},
        "data": {"class_path": "steering.SteeringDataModule", "init_args": {
            "task": "pairs_file", "task_args": {"path": str(pairs)}, "n_steer": N_STEER, "n_dev": N_DEV}},
    }  # fmt: skip
    path = root / name
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_matched_kl_end_to_end_through_the_cli(tiny, monkeypatch):
    from steering.reproduce import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root, model, pairs = tiny
    config, out = _config(root, model, pairs), root / "out"
    methods, budgets = ["grains", "caa", "random_direction"], [1e-4, 0.0058, 0.1]
    argv = ["--config", str(config), "--out", str(out), "--methods", *methods, "--layer-groups", "1-2", "2",
            "--alphas", "1", "4", "--ks", "2", "--kl-budgets", *map(str, budgets), "--split-seeds", "0", "1", "2",
            "--resamples", "200"]  # fmt: skip
    res = main(argv)

    tested: dict[int, list[int]] = {}
    for seed in range(FOLDS):
        folder = out / f"seed{seed}"
        sel = json.loads((folder / "selection.json").read_text())
        assert sel["budgets"] == budgets and list(sel["sweeps"]) == methods
        for c in sel["choices"]:
            rows = [r for r in sel["sweeps"][c["method"]] if r["method"] != "base"]
            within = [r for r in rows if r["kl"] <= c["budget"]]
            if not within:
                assert c["chosen"] is None and c["min_kl"] == min(r["kl"] for r in rows)
                continue
            chosen = c["chosen"]
            assert chosen["kl"] <= c["budget"] and chosen["value"] == max(r["value"] for r in within)
            # the test record of exactly that setting, on this split seed's test fold
            stem = f"{c['method']}{'_k2' if c['method'] == 'grains' else ''}_L{chosen['layers'][0]}"
            stem += f"-{chosen['layers'][-1]}" if len(chosen["layers"]) > 1 else ""
            record = json.loads((folder / f"{stem}_a{chosen['alpha']:g}.test.json").read_text())
            assert record["alpha"] == chosen["alpha"] and record["vector_layers"] == chosen["layers"]
            assert record["vector_metadata"]["dev_value"] == chosen["value"]
            assert record["splits"]["split_seed"] == seed and record["splits"]["rows"]["dev"] == sel["dev_rows"]
            tested[seed] = record["splits"]["rows"]["test"]
            n_q = len(tested[seed])
            assert len(record["per_example"]["steered/mc1"]["value"]) == n_q
        assert (out / f"pareto_seed{seed}.png").read_bytes()[:8] == PNG
    steer = split_indices(N_ROWS, N_STEER, N_DEV, None, 0)["steer"]
    assert sorted(sum(tested.values(), [])) == sorted(set(range(N_ROWS)) - set(steer))  # disjoint folds, all rows

    rows = _rows(out / "results.csv")
    assert len(rows) == len(budgets) * (1 + len(methods)) * (FOLDS + 1)
    pooled = [r for r in rows if r["split_seed"] == "pooled"]
    for r in pooled:
        if r["note"]:
            assert r["method"] != "base" and "no setting within the budget" in r["note"]
            continue
        assert int(r["n_test"]) == N_ROWS - N_STEER  # every non-steering question tested once
        for metric in ("mc1", "mc2"):
            if r["method"] != "base":
                low, mean, high = (float(r[f"d_{metric}_base{s}"]) for s in ("_low", "", "_high"))
                assert low <= mean <= high
                significant = float(r[f"d_{metric}_base_p_mcnemar"]) < 0.05 if metric == "mc1" else not low <= 0 <= high
                assert (r[f"d_{metric}_base_verdict"] == "no difference") == (not significant)
        caa = next(x for x in pooled if x["method"] == "caa" and x["budget"] == r["budget"])
        assert (r["d_mc1_caa"] == "") == (r["method"] == "caa" or bool(caa["note"]))
    assert all(r["note"] for r in pooled if float(r["budget"]) == 1e-4 and r["method"] != "base")
    base = {r["split_seed"]: r for r in rows if r["method"] == "base" and float(r["budget"]) == 0.1}
    per_seed = [float(base[str(s)]["mc2"]) * int(base[str(s)]["n_test"]) for s in range(FOLDS)]
    assert float(base["pooled"]["mc2"]) == pytest.approx(sum(per_seed) / (N_ROWS - N_STEER), abs=1e-4)

    md = (out / "results.md").read_text()
    assert md.count("### dev KL(base ‖ steered) ≤") == len(budgets) and "Score-free references" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("python -m steering.reproduce --config")
    assert "commit" in summary and summary["seconds"] > 0 and summary["stage_seconds"]["test"] > 0
    assert res["summary"]["resumed"] == []

    again = main(argv)  # every stage's record matches: nothing recomputed, the same table
    n_tests = sum(1 for _ in out.glob("seed*/*.test.json"))
    assert len(again["summary"]["resumed"]) == len(methods) * (1 + FOLDS) + n_tests
    assert _rows(out / "results.csv") == rows
    assert len(json.loads((out / "summary.json").read_text())["invocations"]) == 2

    # one method's α grid extended: only its sweeps are recomputed, with the extra α; the others are reused
    third = main([*argv, "--extra-alphas", "random_direction=8"])
    resumed = third["summary"]["resumed"]
    assert all(f"sweep {m} split {s}" in resumed for m in ("grains", "caa") for s in range(FOLDS))
    assert not any(r.startswith("sweep random_direction") for r in resumed)
    rows_rd = json.loads((out / "seed0" / "sweep_random_direction.json").read_text())["rows"]
    assert sorted({r["alpha"] for r in rows_rd if r["method"] != "base"}) == [1.0, 4.0, 8.0]

    # the random-direction null: 2 further directions at the control's chosen setting of budget 0.1, every seed
    null_argv = [*argv, "--extra-alphas", "random_direction=8", "--null-draws", "2", "--null-budgets", "0.1"]
    fourth = main(null_argv)
    for seed in range(FOLDS):
        sel = json.loads((out / f"seed{seed}" / "selection.json").read_text())
        chosen = next(c["chosen"] for c in sel["choices"] if c["method"] == "random_direction" and c["budget"] == 0.1)
        stem = f"random_direction_L{chosen['layers'][0]}" + (
            f"-{chosen['layers'][-1]}" if len(chosen["layers"]) > 1 else "") + f"_a{chosen['alpha']:g}"  # fmt: skip
        control = json.loads((out / f"seed{seed}" / f"{stem}.test.json").read_text())
        for draw in (1, 2):
            rec = json.loads((out / f"seed{seed}" / "null" / f"{stem}_draw{draw}.test.json").read_text())
            assert rec["alpha"] == chosen["alpha"] and rec["vector_layers"] == chosen["layers"]
            assert rec["vector_metadata"]["null_draw"] == draw
            assert rec["splits"]["rows"]["test"] == control["splits"]["rows"]["test"]
            assert rec["per_example"]["steered/mc2"]["value"] != control["per_example"]["steered/mc2"]["value"]
    md = (out / "results.md").read_text()
    assert "### Random-direction null" in md and fourth["summary"]["null_draws"] == 2
    fifth = main(null_argv)  # the draws' records are reused
    assert sum(r.startswith("null ") for r in fifth["summary"]["resumed"]) == 2 * FOLDS
    draw1 = next((out / "seed0" / "null").glob("*_draw1.safetensors"))
    shutil.copy(draw1.with_name(draw1.name.replace("draw1", "draw2")), draw1)  # another generator's vector
    sixth = main(null_argv)  # that draw (only) is tested again
    assert sum(r.startswith("null ") for r in sixth["summary"]["resumed"]) == 2 * FOLDS - 1
    assert (out / "results.md").read_text().split("Wall time")[0] == md.split("Wall time")[0]

    # the same report rebuilt from the records alone, by the module's command line in a fresh process
    done = subprocess.run([sys.executable, "-m", "steering.reproduce", "--out", str(root / "collected"), "--collect",
                           str(out), "--resamples", "200"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert _rows(root / "collected" / "results.csv") == rows and "### dev KL(base ‖ steered)" in done.stdout
    summary = json.loads((out / "summary.json").read_text())  # the collected report says where its records came from
    provenance = (root / "collected" / "results.md").read_text()
    assert f"`{summary['command']}`" in provenance and f"over {len(summary['invocations'])} invocation(s)" in provenance
    assert "--collect" in provenance and "at commit" in provenance


def _swap_labels(src: Path, dst: Path, rows: list[int]) -> Path:
    lines = src.read_text().splitlines()
    for i in rows:
        r = json.loads(lines[i])
        r["preferred"], r["dispreferred"] = r["dispreferred"], r["preferred"]
        r["correct"], r["incorrect"] = r["incorrect"], r["correct"]
        lines[i] = json.dumps(r)
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_the_selection_never_sees_the_test_labels(tiny, monkeypatch):
    """Swapping the true and false answers of every test question of split seed 0 leaves its selection unchanged."""
    from steering.reproduce import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root, model, pairs = tiny
    test_rows = split_indices(N_ROWS, N_STEER, N_DEV, None, 0, 0, FOLDS)["test"]
    permuted = _swap_labels(pairs, root / "permuted.jsonl", test_rows)
    assert permuted.read_text() != pairs.read_text()
    selections = []
    for name, data in (("a", pairs), ("b", permuted)):
        config = _config(root, model, data, f"{name}.yaml")
        out = root / f"select_{name}"
        main(["--config", str(config), "--out", str(out), "--methods", "grains", "caa", "--layer-groups", "1-2", "2",
              "--alphas", "1", "4", "--kl-budgets", "0.0058", "0.1", "--split-seeds", "0", "--folds", str(FOLDS),
              "--select-only"])  # fmt: skip
        assert not list(out.rglob("*.test.json"))  # the test split was not evaluated
        selections.append(json.loads((out / "seed0" / "selection.json").read_text()))
    assert selections[0] == selections[1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split-seeds", "0", "3"], "--split-seeds \\[0, 3\\] must be distinct and in 0 … --folds − 1 = 1"),
        (["--kl-budgets", "0.1", "-1"], "KL budgets must be a non-empty list of numbers > 0"),
        (["--kl-budgets", "lots"], "--kl-budgets takes numbers > 0 or the single word none"),
        (["--layer-groups", "a-b"], "layer group 'a-b' is not an index"),
        (["--alphas", "0", "2"], "--alphas must be finite and non-zero"),
        (["--methods", "grains", "steer_harder"], "method 'steer_harder'"),
        (["--folds", "3"], "--folds needs --split-seeds"),
        (
            ["--extra-alphas", "nosuch=16"],
            "--extra-alphas 'nosuch=16': expected METHOD=A,B with METHOD one of --methods",
        ),
        (["--extra-alphas", "random_direction=big"], "the α values must be numbers, e.g. random_direction=16,24"),
        (["--extra-alphas", "random_direction=0,24"], "α must be finite and non-zero, got \\[0.0\\]"),
        (["--null-draws", "-1"], "--null-draws -1 must be >= 0"),
        (["--null-draws", "2", "--methods", "grains", "caa"], "--null-draws needs the random_direction control"),
        (
            ["--null-draws", "2", "--kl-budgets", "0.1", "--null-budgets", "0.3"],
            "--null-budgets \\[0.3\\] must be among --kl-budgets \\[0.1\\]",
        ),
        (["--target", "mc3"], "--target 'mc3' is not a target of the dev examples \\['binary', 'mc1', 'mc2'\\]"),
        (["--ks", "7"], "--ks \\[7\\] are not extracted: the config extracts k \\[2, 1\\]"),
        (["--layer-groups", "2-4"], "layers \\[3, 4\\] are not extracted"),
    ],
)
def test_bad_options_fail_by_name_before_any_work(tiny, tmp_path, capsys, extra, message):
    from steering.reproduce import main

    root, model, pairs = tiny
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(_config(root, model, pairs)), "--out", str(tmp_path / "o"), *extra])
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not list((tmp_path / "o").glob("*.safetensors"))


def test_make_steer_smollm_options_parse_and_fit_truthfulqa(shared_data):
    """The Makefile's command passes the option checks, and its split sizes fit TruthfulQA's questions."""
    from steering.data import split_indices as split
    from steering.reproduce import _check, _parser

    argv = reproduce_commands("steer_smollm2_truthfulqa")[0]
    p = _parser()
    a, overrides = p.parse_known_args(argv)
    _check(p, a)
    assert len(a.seeds) >= 3 and a.budgets == sorted(a.budgets) and "random_direction" in a.methods
    assert max(a.method_alphas["random_direction"]) > max(a.alphas)  # a random direction needs a larger α
    config = yaml.safe_load((REPO / a.config).read_text())["data"]["init_args"]
    config.update({o.split("=")[0].removeprefix("--data.init_args."): int(o.split("=")[1]) for o in overrides
                   if o.startswith(("--data.init_args.n_test=", "--data.init_args.n_dev="))})  # fmt: skip
    n_test = config["n_test"]
    questions = json.loads((shared_data / "truthfulqa" / "TruthfulQA" / "data" / "mc_task.json").read_text())
    for seed in a.seeds:  # raises if a fold or the dev pool is too small
        sizes = {k: len(v) for k, v in split(len(questions), config["n_steer"], config["n_dev"], n_test,
                                             config["seed"], seed, a.folds).items()}  # fmt: skip
        assert sizes == {"steer": config["n_steer"], "dev": config["n_dev"], "test": n_test}
