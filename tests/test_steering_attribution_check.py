"""``steering.attribution_agreement`` invariants and ``python -m steering.attribution_check`` end to end on a tiny
Llama: files written, every metric in range, IG of more steps closer to complete; bad arguments named before any
model loads."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from steering.attribution_agreement import average_ranks, jaccard, pairwise_jaccard, spearman, summarize
from steering.attribution_check import JSON_NAME, MARKDOWN_NAME, main


# ---- the pure computations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("a", [[1, 2, 3], [], [7]])
def test_jaccard_of_a_set_with_itself_is_one(a):
    assert jaccard(a, a) == 1.0 and jaccard(a, list(reversed(a))) == 1.0


def test_jaccard_is_symmetric_bounded_and_zero_for_disjoint_sets():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        a, b = (torch.randint(0, 12, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
                for _ in range(2))  # fmt: skip
        assert jaccard(a, b) == jaccard(b, a) and 0.0 <= jaccard(a, b) <= 1.0
    assert jaccard([1, 2], [3, 4]) == 0.0 and jaccard([1, 2], [2, 3]) == pytest.approx(1 / 3)
    assert jaccard([], [1]) == 0.0


def test_pairwise_jaccard_covers_every_pair_once():
    sets = {20: [1, 2], 10: [1, 2], 50: [3]}
    assert pairwise_jaccard(sets) == {"10-20": 1.0, "10-50": 0.0, "20-50": 0.0}
    assert pairwise_jaccard({10: [1]}) == {}


def test_spearman_invariants():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, generator=g)
    assert spearman(x, x) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x.exp() * 3 + 1) == pytest.approx(1.0)  # a monotone transform keeps every rank
    y = torch.randn(30, generator=g)
    assert spearman(x, y) == pytest.approx(spearman(y, x)) and -1 <= spearman(x, y) <= 1
    assert math.isnan(spearman(torch.ones(5), x[:5])) and math.isnan(spearman(x[:1], x[:1]))
    with pytest.raises(ValueError, match="one length"):
        spearman(x, x[:3])


def test_average_ranks_share_ties():
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    r = average_ranks(torch.randn(17))
    assert float(r.sum()) == pytest.approx(17 * 18 / 2)


def test_summarize_skips_what_is_not_a_number():
    assert summarize([1.0, None, 3.0, math.nan, 2.0]) == {"mean": 2.0, "median": 2.0, "n": 3}
    assert summarize([]) == {"mean": None, "median": None, "n": 0}


# ---- the command -------------------------------------------------------------------------------------------------
def _config(tmp_path, tiny_dir, pairs_file, **grains) -> str:
    config = {
        "model": {"class_path": "steering.SteeringModule", "init_args": {
            "model_path": str(tiny_dir), "grains": {"top_k": 2, "internal_batch_size": 8, **grains}}},
        "data": {"class_path": "steering.SteeringDataModule", "init_args": {
            "task": "pairs_file", "task_args": {"path": str(pairs_file)}, "n_steer": 4, "n_dev": 2, "n_test": 2}},
    }  # fmt: skip
    path = tmp_path / f"steer-{len(grains)}-{'-'.join(map(str, grains.values()))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_command_writes_json_and_markdown_with_every_metric(tiny_dir, pairs_file, tmp_path, capsys):
    out = tmp_path / "check"
    config = _config(tmp_path, tiny_dir, pairs_file)
    report = main(["--config", config, "--n", "3", "--steps", "2", "64", "4", "--quadratures", "gausslegendre",
                   "gausslegendre_squared", "--out", str(out), "--device", "cpu"])  # fmt: skip
    saved = json.loads((out / JSON_NAME).read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"])) and len(saved["examples"]) == 3
    assert saved["setup"]["steps"] == [2, 4, 64] and not list(out.glob(".*tmp*"))  # no temporary file left
    md = (out / MARKDOWN_NAME).read_text()
    assert "| metric | mean | median | n |" in md and "step_jaccard/gausslegendre/2-64/P" in md
    for row in saved["examples"]:
        for q in ("gausslegendre", "gausslegendre_squared"):
            assert all(math.isfinite(row["ig"][q][s]["completeness_error"]) for s in ("2", "4", "64"))
            for side in ("P", "Q"):
                assert set(row["step_jaccard"][q][side]) == {"2-4", "2-64", "4-64"}
                assert all(0 <= j <= 1 for j in row["step_jaccard"][q][side].values())
                assert len(row["ig"][q]["64"][side]) <= 2
            for s in ("2", "4", "64"):
                agree = row["ig_vs_occlusion"][q][s]
                assert math.isnan(agree["spearman"]) or -1 <= agree["spearman"] <= 1
                assert 0 <= agree["P_jaccard"] <= 1 and 0 <= agree["Q_jaccard"] <= 1
        assert row["occlusion"]["seconds"] > 0 and row["n_candidates"] == row["n_tokens"] - 2
    s = saved["summary"]
    assert s["abs_completeness_error/gausslegendre/64"]["n"] == 3 and s["seconds_occlusion"]["n"] == 3
    errors = [abs(r["ig"]["gausslegendre"]["4"]["completeness_error"]) for r in saved["examples"]]
    assert s["abs_completeness_error/gausslegendre/4"]["mean"] == pytest.approx(sum(errors) / 3)
    assert "written:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0", "10"], r"--steps \[0\] must all be >= 1"),
        (["--steps", "10", "10"], r"--steps \[10\] needs at least 2 distinct"),
        (["--n", "0"], "--n 0 must be >= 1"),
        (["--n", "99"], "--n 99 exceeds the 4 examples"),
        (["--quadratures", "simpson"], r"--quadratures 'simpson' is not one of \('gausslegendre'"),
        (["--k", "0"], "--k 0 must be >= 1"),
        (["--device", "tpu"], "--device 'tpu': allowed cpu, cuda or cuda:<i>"),
    ],
)
def test_bad_arguments_are_named_before_the_model_loads(tiny_dir, pairs_file, tmp_path, capsys, monkeypatch, args,
                                                         message):  # fmt: skip
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("steering.loading.load_model_and_tokenizer", no_model)
    config = _config(tmp_path, tiny_dir, pairs_file)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config, "--steps", "2", "4", "--out", str(tmp_path / "o"), *args])
    assert exit_info.value.code == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_bad_config_is_named(tiny_dir, pairs_file, tmp_path, capsys):
    for config, message in (
        (str(tmp_path / "missing.yaml"), "does not exist"),
        (_config(tmp_path, tiny_dir, pairs_file, ig_stepz=3), "grains keys ['ig_stepz'] are not GrainsConfig fields"),
        (_config(tmp_path, tiny_dir, pairs_file, mask="zero"), "grains in the config: mask 'zero' is not one of"),
    ):
        with pytest.raises(SystemExit):
            main(["--config", config, "--out", str(tmp_path / "o")])
        assert message in capsys.readouterr().err
