"""SteeringModule / SteeringDataModule / SteeringVectorWriter on a tiny random Llama saved to a folder.

Invariants: predict writes exactly N deltas (N = steering-set size) and a vector that 1 and 2 DDP processes agree
on; test counts each example once (sizes that do not divide evenly); splits are disjoint; bad input fails early
with a message naming the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lmcore.cli import _launch as launch_state
from steering import GrainsConfig, SteeringVector
from steering.data import SteeringDataModule, split_indices
from steering.metrics import IndexedMean
from steering.module import SteeringModule
from steering.writer import deltas_path, load_deltas, merge_predictions, splits_path

REPO = Path(__file__).resolve().parents[1]
GRAINS = GrainsConfig(top_k=2, ig_steps=4, internal_batch_size=4)


def _dm(tiny_dir, pairs_file, **kw) -> SteeringDataModule:
    args = dict(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(pairs_file)}, n_steer=5,
                n_dev=2, n_test=5, batch_size=2, eval_batch_size=2)  # fmt: skip
    return SteeringDataModule(**{**args, **kw})


def _module(tiny_dir, vector_path, **kw) -> SteeringModule:
    args = dict(model_path=str(tiny_dir), layers=[1, 2], grains=GRAINS, extra_top_k=[3], vector_path=str(vector_path),
                alpha=2.0)  # fmt: skip
    return SteeringModule(**{**args, **kw})


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def test_split_indices_are_disjoint_seeded_and_complete():
    a = split_indices(20, 5, 4, None, seed=3)
    assert a == split_indices(20, 5, 4, None, seed=3) and a != split_indices(20, 5, 4, None, seed=4)
    assert [len(a[k]) for k in ("steer", "dev", "test")] == [5, 4, 11]
    assert sorted(a["steer"] + a["dev"] + a["test"]) == list(range(20))
    with pytest.raises(ValueError, match="exceeds"):
        split_indices(10, 5, 5, 1, seed=0)


def test_split_seeds_are_cross_fitted_folds_with_disjoint_tests_and_a_shared_steering_set():
    n, n_steer, n_dev, folds = 41, 5, 6, 3
    splits = [split_indices(n, n_steer, n_dev, None, 7, s, folds) for s in range(folds)]
    assert splits[0] == split_indices(n, n_steer, n_dev, None, 7, 0, folds)  # seeded
    legacy = split_indices(n, n_steer, n_dev, None, seed=7)
    pool = set(range(n)) - set(legacy["steer"])
    for s, split in enumerate(splits):
        assert split["steer"] == legacy["steer"]  # one extraction serves every split seed
        assert len(split["dev"]) == n_dev and not set(split["dev"]) & set(split["test"])
        assert not set(split["steer"]) & (set(split["dev"]) | set(split["test"]))
        for other in splits[s + 1 :]:
            assert not set(split["test"]) & set(other["test"])  # disjoint test folds: questions can be pooled
    assert set().union(*(set(split["test"]) for split in splits)) == pool  # together they test every question once
    assert [len(split["test"]) for split in splits] == [12, 12, 12]
    assert split_indices(n, n_steer, n_dev, 4, 7, 1, folds)["test"] == splits[1]["test"][:4]
    for bad, match in (((3, folds), "split_seed 3 must be in 0"), ((0, 1), "n_folds 1 must be >= 2"),
                       ((0, None), "go together")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            split_indices(n, n_steer, n_dev, None, 7, *bad)
    with pytest.raises(ValueError, match="n_test 13 exceeds the 12 rows of test fold 0"):
        split_indices(n, n_steer, n_dev, 13, 7, 0, folds)
    with pytest.raises(ValueError, match="n_dev 30 exceeds the 24 rows outside test fold 2"):
        split_indices(n, n_steer, 30, None, 7, 2, folds)


def test_indexed_mean_counts_each_index_once():
    m, n = IndexedMean(), IndexedMean("count")
    for metric in (m, n):
        metric.update(torch.tensor([0, 1, 2]), torch.tensor([1.0, 0.0, 1.0]))
        metric.update(torch.tensor([2, 0]), torch.tensor([1.0, 1.0]))  # padding duplicates
    assert float(m.compute()) == pytest.approx(2 / 3) and float(n.compute()) == 3
    assert m.per_example() == ([0, 1, 2], [1.0, 0.0, 1.0])  # the paired outcomes behind the mean


def test_merge_predictions_drops_duplicates_and_sorts():
    d = torch.arange(5.0)[:, None, None, None].expand(5, 1, 2, 3)  # (N, R, L, d), row i filled with i
    preds = [{"index": torch.tensor([3, 4, 0]), "layers": [1, 2], "deltas": {2: (d[[3, 4, 0]], None)}},
             {"index": torch.tensor([1, 2, 3]), "layers": [1, 2], "deltas": {2: (d[[1, 2, 3]], None)}}]  # fmt: skip
    merged = merge_predictions(preds, expected=5)
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(merged["deltas"][2][0], d)
    with pytest.raises(ValueError, match="expected 6"):
        merge_predictions(preds, expected=6)


def test_predict_then_test(tiny_dir, pairs_file, tmp_path):
    vec = tmp_path / "v.safetensors"
    dm = _dm(tiny_dir, pairs_file)
    _trainer().predict(_module(tiny_dir, vec), datamodule=dm)
    vector = SteeringVector.load(vec)
    assert vector.layers == [1, 2] and vector.metadata["n_examples_gathered"] == 5
    assert all(abs(float(v.norm()) - 1) < 1e-5 for v in vector.vectors.values())  # unit_norm
    layers, deltas, _ = load_deltas(deltas_path(vec))
    assert layers == [1, 2] and sorted(deltas) == [2, 3] and deltas[2][0].shape[:3] == (5, 1, 2)
    record = json.loads(splits_path(vec).read_text())
    rows = record["rows"]
    assert not set(rows["steer"]) & set(rows["dev"]) and not set(rows["steer"]) & set(rows["test"])
    assert vector.metadata["splits"]["rows_hash"] == record["rows_hash"]

    module = _module(tiny_dir, vec)
    _trainer().test(module, datamodule=_dm(tiny_dir, pairs_file))
    res = module.test_results
    assert res["test/n_examples"] == 5
    for name in ("binary", "mc1", "mc2"):
        assert 0 <= res[f"test/base/{name}"] <= 1 and 0 <= res[f"test/steered/{name}"] <= 1
    assert res["test/steered/kl"] >= 0 and res["test/base/ppl"] > 1
    saved = json.loads(vec.with_name("v.test.json").read_text())
    assert saved["metrics"]["test/n_examples"] == 5 and saved["splits"]["sizes"] == {"steer": 5, "dev": 2, "test": 5}

    zero = _module(tiny_dir, vec, alpha=0.0)  # α = 0 is an exact no-op: steered == base, KL == 0
    _trainer().test(zero, datamodule=_dm(tiny_dir, pairs_file))
    r = zero.test_results
    assert r["test/steered/mc2"] == r["test/base/mc2"] and r["test/steered/kl"] == pytest.approx(0, abs=1e-7)


@pytest.mark.parametrize("method", ["caa", "pca", "random_k", "all_tokens"])
def test_baselines_through_the_same_module(tiny_dir, pairs_file, tmp_path, method):
    vec = tmp_path / f"{method}.safetensors"
    _trainer().predict(_module(tiny_dir, vec, method=method), datamodule=_dm(tiny_dir, pairs_file))
    vector = SteeringVector.load(vec)
    assert vector.metadata["method"] == method and vector.metadata["n_examples_gathered"] == 5


def test_random_k_draw_does_not_depend_on_the_batch_size(tiny_dir, pairs_file, tmp_path):
    """Each example's random k tokens are seeded by its dataset index, not by its position within a batch, so batch
    size (and world size) do not change the random_k vector."""
    grains = replace(GRAINS, top_k=1)  # fewer tokens than candidates, so the draw matters
    vectors, tops = [], []
    for bs in (1, 5, 2):
        vec = tmp_path / f"bs{bs}.safetensors"
        module = _module(tiny_dir, vec, method="random_k", grains=grains, extra_top_k=None)
        _trainer().predict(module, datamodule=_dm(tiny_dir, pairs_file, batch_size=bs))
        vectors.append(SteeringVector.load(vec))
        tops.append(load_deltas(deltas_path(vec))[1][1][0])
    for other, deltas in zip(vectors[1:], tops[1:]):
        torch.testing.assert_close(deltas, tops[0], atol=1e-6, rtol=0)
        for layer in vectors[0].layers:
            torch.testing.assert_close(other.vectors[layer], vectors[0].vectors[layer], atol=1e-6, rtol=0)


def test_test_before_predict_names_the_command(tiny_dir, pairs_file, tmp_path, monkeypatch):
    monkeypatch.setitem(launch_state, "config", "experiments/x.yaml")
    module = _module(tiny_dir, tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match=r"run predict first: lightning predict --config experiments/x\.yaml"):
        _trainer().test(module, datamodule=_dm(tiny_dir, pairs_file))
    assert module.hf_model is None  # failed before loading weights


def test_vector_for_another_model_is_refused(tiny_dir, pairs_file, tmp_path):
    vec = tmp_path / "other.safetensors"
    SteeringVector({1: torch.ones(32)}, {"hidden_size": 32, "num_layers": 3, "model_id": "other"}).save(vec)
    module = _module(tiny_dir, vec)
    with pytest.raises(ValueError, match="hidden_size 32.*has hidden_size 16"):
        _trainer().test(module, datamodule=_dm(tiny_dir, pairs_file))
    assert module.hf_model is None


@pytest.mark.parametrize(
    ("vector", "message"),
    [({1: torch.ones(32)}, r"hidden size 32.*has hidden_size 16"),
     ({5: torch.ones(16)}, r"layers \[5\] .*3 decoder layers")],
)  # fmt: skip
def test_vector_without_metadata_is_checked_before_loading(tiny_dir, pairs_file, tmp_path, vector, message):
    """Without ``hidden_size`` / ``num_layers`` metadata the tensors themselves are checked against the config."""
    vec = tmp_path / "bare.safetensors"
    SteeringVector(vector).save(vec)
    module = _module(tiny_dir, vec)
    with pytest.raises(ValueError, match=message):
        _trainer().test(module, datamodule=_dm(tiny_dir, pairs_file))
    assert module.hf_model is None


def test_model_without_decoder_layers_is_refused_before_loading(pairs_file, tmp_path):
    """An encoder (BERT) has no decoder layers to steer: refused from its config, before any weights load."""
    import transformers as tf

    from tests.tiny_lm import tiny_lm_tokenizer

    config = tf.BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32)  # fmt: skip
    tf.BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    tiny_lm_tokenizer().save_pretrained(tmp_path / "bert")
    for stage in ("predict", "test"):
        module = _module(tmp_path / "bert", tmp_path / "v.safetensors", layers=None)
        if stage == "test":
            SteeringVector({1: torch.ones(16)}).save(tmp_path / "v.safetensors")
        with pytest.raises(ValueError, match=r"bert.*\(bert\) has no decoder layers to steer.*causal LM"):
            getattr(_trainer(), stage)(module, datamodule=_dm(tmp_path / "bert", pairs_file))
        assert module.hf_model is None


def test_layers_beyond_the_model_are_refused_before_loading(tiny_dir, pairs_file, tmp_path):
    module = _module(tiny_dir, tmp_path / "v.safetensors", layers=[1, 7])
    with pytest.raises(ValueError, match=r"layers \[7\] are out of range .* 3 decoder layers"):
        _trainer().predict(module, datamodule=_dm(tiny_dir, pairs_file))
    assert module.hf_model is None


def test_bad_data_and_arguments(tiny_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "preferred": "a"}) + "\n")
    dm = SteeringDataModule(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(bad)}, n_steer=1,
                            n_dev=0, n_test=None)  # fmt: skip
    with pytest.raises(ValueError, match=r"missing columns \['dispreferred'\]"):
        dm.setup("predict")
    with pytest.raises(ValueError, match="steering set cannot be empty"):
        SteeringDataModule(model_path=str(tiny_dir), n_steer=0)
    with pytest.raises(ValueError, match="task 'nope' is not one of"):
        SteeringDataModule(model_path=str(tiny_dir), task="nope")
    with pytest.raises(ValueError, match="method 'ica' is not one of"):
        SteeringModule(model_path=str(tiny_dir), method="ica")
    with pytest.raises(ValueError, match="aggregate 'median' is not one of"):
        SteeringModule(model_path=str(tiny_dir), aggregate="median")


def _config(tmp_path, tiny_dir, pairs_file, vec, **trainer) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "run"), **trainer},
        "model": {"class_path": "steering.SteeringModule", "init_args": {
            "model_path": str(tiny_dir), "layers": [1, 2], "extra_top_k": [3], "vector_path": str(vec), "alpha": 2.0,
            "grains": {"top_k": 2, "ig_steps": 4, "internal_batch_size": 4}}},
        "data": {"class_path": "steering.SteeringDataModule", "init_args": {
            "task": "pairs_file", "task_args": {"path": str(pairs_file)}, "n_steer": 5, "n_dev": 2, "n_test": 5,
            "batch_size": 2, "eval_batch_size": 2}},
    }  # fmt: skip
    path = tmp_path / f"steer-{len(trainer)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _lightning(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cap_lightning", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ddp_two_processes_match_one_process(tiny_dir, pairs_file, tmp_path):
    """5 steering and 5 test examples on 2 ranks (3 + 2; the test sampler pads one duplicate)."""
    from lmcore.cli import run_cli

    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    run_cli(["predict", "--config", str(_config(tmp_path, tiny_dir, pairs_file, one))])
    ref = run_cli(["test", "--config", str(_config(tmp_path, tiny_dir, pairs_file, one))]).model.test_results
    ddp = _config(tmp_path, tiny_dir, pairs_file, two, devices=2, strategy="ddp")
    _lightning("predict", "--config", str(ddp), cwd=tmp_path)
    a, b = SteeringVector.load(one), SteeringVector.load(two)
    assert a.layers == b.layers and b.metadata["n_examples_gathered"] == 5
    for layer in a.layers:
        torch.testing.assert_close(a.vectors[layer], b.vectors[layer], atol=1e-5, rtol=0)
    _lightning("test", "--config", str(ddp), cwd=tmp_path)
    record = json.loads(two.with_name("two.test.json").read_text())
    got = record["metrics"]
    assert got["test/n_examples"] == 5
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    # the per-question outcomes (for paired tests) are gathered from both ranks, each question once
    single = json.loads(one.with_name("one.test.json").read_text())["per_example"]
    assert sorted(record["per_example"]) == sorted(single)
    for name, per in record["per_example"].items():
        assert per["index"] == single[name]["index"] == list(range(5)), name
        assert per["value"] == pytest.approx(single[name]["value"], abs=1e-5), name
    # random_k: each example's draw is seeded by its dataset index, so the ranks' batching does not change it
    rk_one, rk_two = tmp_path / "rk_one.safetensors", tmp_path / "rk_two.safetensors"
    random_k = ["--model.init_args.method=random_k", "--model.init_args.grains.top_k=1"]
    run_cli(["predict", "--config", str(_config(tmp_path, tiny_dir, pairs_file, rk_one)), *random_k])
    _lightning("predict", "--config", str(ddp), *random_k, f"--model.init_args.vector_path={rk_two}", cwd=tmp_path)
    a, b = SteeringVector.load(rk_one), SteeringVector.load(rk_two)
    assert a.metadata["method"] == b.metadata["method"] == "random_k" and b.metadata["n_examples_gathered"] == 5
    for layer in a.layers:
        torch.testing.assert_close(a.vectors[layer], b.vectors[layer], atol=1e-5, rtol=0)


def test_device_map_path_gives_the_same_vector(tiny_dir, pairs_file, tmp_path):
    """``device_map`` (sharding a model too big for one device) keeps the model out of Lightning's device moves."""
    pytest.importorskip("accelerate")
    plain, mapped = tmp_path / "plain.safetensors", tmp_path / "mapped.safetensors"
    _trainer().predict(_module(tiny_dir, plain), datamodule=_dm(tiny_dir, pairs_file))
    module = _module(tiny_dir, mapped, device_map="cpu")
    _trainer().predict(module, datamodule=_dm(tiny_dir, pairs_file))
    assert "hf_model" not in dict(module.named_children())
    a, b = SteeringVector.load(plain), SteeringVector.load(mapped)
    for layer in a.layers:
        torch.testing.assert_close(a.vectors[layer], b.vectors[layer], atol=1e-6, rtol=0)


def test_run_labels_from_the_resolved_config(capsys):
    """The launcher's hook: name ``<task>-<method>-k<k>-a<alpha>-s<seed>``, group ``steer/<task>``, tags."""
    from lmcore.cli import run_cli

    with pytest.raises(SystemExit):
        run_cli(["predict", "--config", str(REPO / "experiments" / "steer_smollm2_truthfulqa.yaml"), "--print_config",
                 "--model.init_args.method=caa", "--model.init_args.grains.top_k=7"])  # fmt: skip
    config = yaml.safe_load(capsys.readouterr().out)
    labels = SteeringModule.run_labels(config)
    assert labels == {"name": "truthfulqa-caa-k7-a4-s0", "group": "steer/truthfulqa",
                      "tags": ["steering", "truthfulqa", "caa"]}  # fmt: skip
    config["data"]["init_args"]["seed"] = 3
    config["model"]["init_args"].update(alpha=0.5, grains=GrainsConfig(top_k=4))
    assert SteeringModule.run_labels(config)["name"] == "truthfulqa-caa-k4-a0.5-s3"
    assert SteeringModule.run_labels({"model": {"init_args": {}}, "data": {"init_args": {"task": "t"}}})["name"] == (
        "t-grains-k10-a4-sNone"
    )


def test_the_writers_own_every_file(tiny_dir, pairs_file, tmp_path):
    """Without its writer callbacks the module computes (vector metadata, test metrics) but writes nothing."""
    from steering.writer import SteeringResultsWriter, SteeringVectorWriter, results_path

    class Silent(SteeringModule):
        def configure_callbacks(self):
            return []

    vec = tmp_path / "v.safetensors"
    module = _module(tiny_dir, vec)
    assert {type(c) for c in module.configure_callbacks()} == {SteeringVectorWriter, SteeringResultsWriter}
    args = dict(model_path=str(tiny_dir), layers=[1, 2], grains=GRAINS, vector_path=str(vec), alpha=2.0)
    _trainer().predict(Silent(**args), datamodule=_dm(tiny_dir, pairs_file))
    assert not list(tmp_path.iterdir())
    _trainer().predict(module, datamodule=_dm(tiny_dir, pairs_file))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["v.deltas.safetensors", "v.safetensors", "v.splits.json"]
    silent = Silent(**args)
    _trainer().test(silent, datamodule=_dm(tiny_dir, pairs_file))
    assert silent.test_results["test/n_examples"] == 5 and not results_path(vec).exists()


def _mixed_pairs(path: Path) -> Path:
    """Rows with 2 choices (binary only) and rows with 4 (binary, mc1, mc2), alternating."""
    from tests.tiny_lm import TINY_QUESTIONS

    rows = []
    for i, (q, good, bad) in enumerate(TINY_QUESTIONS):
        row = {"question": q, "preferred": good, "dispreferred": bad}
        if i % 2:
            row.update(correct=[good + " indeed"], incorrect=[TINY_QUESTIONS[(i + 3) % len(TINY_QUESTIONS)][2]])
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


class _MetricSets(L.Callback):
    """Records the module's metric names when each test batch starts."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen.append(set(pl_module.metrics))


def test_every_metric_exists_before_the_first_step(tiny_dir, pairs_file, tmp_path):
    """Metrics are created in on_test_start from the whole eval split, not lazily per batch: a rank whose batches
    lack a target (or a rank with no batch) would otherwise hold other metrics than its peers and hang compute()."""
    vec = tmp_path / "v.safetensors"
    _trainer().predict(_module(tiny_dir, vec), datamodule=_dm(tiny_dir, pairs_file))
    module, seen = _module(tiny_dir, vec), _MetricSets()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[seen])
    trainer.test(module, datamodule=_dm(tiny_dir, pairs_file))
    final = {k.removeprefix("test/") for k in module.test_results if not k.endswith("/ppl")}
    assert len(seen.seen) == 3 and all(names == final for names in seen.seen)
    assert {"base/mc1", "steered/mc2", "steered/kl", "base/nll", "n_examples"} <= final


def test_examples_with_different_targets_in_one_batch(tiny_dir, tmp_path):
    """Each target averages over the examples that have it (2-choice rows have no mc1 / mc2)."""
    from steering.tasks import choice_metrics, score_examples

    mixed = _mixed_pairs(tmp_path / "mixed.jsonl")
    vec = tmp_path / "v.safetensors"
    dm = _dm(tiny_dir, mixed, n_steer=2, n_dev=0, n_test=6, eval_batch_size=3)
    _trainer().predict(_module(tiny_dir, vec), datamodule=dm)
    module = _module(tiny_dir, vec)
    _trainer().test(module, datamodule=dm)
    res = module.test_results
    examples = dm.splits["test"]
    assert {len(ex.targets) for ex in examples} == {1, 3}  # binary only, and binary + mc1 + mc2
    per = [
        choice_metrics(ex, s) for ex, s in zip(examples, score_examples(module.hf_model, module.tokenizer, examples))
    ]
    for name in ("binary", "mc1", "mc2"):
        values = [p[name] for p in per if name in p]
        assert res[f"test/base/{name}"] == pytest.approx(sum(values) / len(values), abs=1e-6), name
    assert res["test/n_examples"] == 6


def test_evaluation_metric_names_depend_on_the_split_not_on_a_rank_s_batches():
    from steering.metric_names import evaluation_metric_names
    from steering.tasks import GenExample, MCExample

    binary = MCExample("q", ("a", "b"), {"binary": ((0,), (1,))}, (0, 1))
    mc = MCExample("q", ("a", "b", "c"), {"mc1": ((0,), (1, 2)), "binary": ((0,), (1,))}, (0, 1))
    image = MCExample("q", ("a", "b"), {"preference": ((0,), (1,))}, (0, 1), pixel_values=torch.zeros(1, 3, 2, 2))
    split = [binary, mc, binary]
    names = evaluation_metric_names(split)
    assert names == ["base/binary", "base/mc1", "steered/binary", "steered/mc1", "steered/kl", "base/nll",
                     "steered/nll", "n_examples"]  # fmt: skip
    # what lazy per-batch creation gave two ranks holding [binary] and [mc]: different sets
    assert set(evaluation_metric_names([binary])) != set(evaluation_metric_names([mc]))
    assert evaluation_metric_names(split, eval_base=False, side_effects=False) == [
        "steered/binary", "steered/mc1", "n_examples"
    ]  # fmt: skip
    assert evaluation_metric_names([image]) == ["base/preference", "steered/preference", "n_examples"]
    gen = GenExample("q", "ref")
    assert evaluation_metric_names([gen], eval_base=False) == [
        "steered/judge_score", "steered/hallucination_rate", "n_examples"
    ]  # fmt: skip


# ---- resume of an interrupted predict (parts) ---------------------------------------------------------------------
class _Counting:
    """Counts ``example_deltas`` calls (model runs, one per computed batch); raises on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        import steering.module as module

        self.real, self.calls, self.fail_at = module.example_deltas, 0, fail_at

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("killed")
        return self.real(*args, **kwargs)


def _predict(monkeypatch, tiny_dir, pairs_file, vec, fail_at=None, **module_kw) -> _Counting:
    counter = _Counting(fail_at)
    monkeypatch.setattr("steering.module.example_deltas", counter)
    dm = _dm(tiny_dir, pairs_file, n_steer=7, n_dev=2, n_test=3)  # 4 batches of 2 (the last holds 1)
    _trainer().predict(_module(tiny_dir, vec, **module_kw), datamodule=dm)
    return counter


def _interrupt(monkeypatch, tiny_dir, pairs_file, vec, **module_kw) -> list[Path]:
    """Kill predict on its 3rd batch; returns the parts the first two left."""
    from steering.writer import parts_root

    with pytest.raises(RuntimeError, match="killed"):
        _predict(monkeypatch, tiny_dir, pairs_file, vec, fail_at=3, **module_kw)
    assert not vec.exists()
    parts = sorted(parts_root(vec).glob("*/part-*.safetensors"))
    assert len(parts) == 2 and all((p.parent / "key.json").is_file() for p in parts)
    return parts


def _assert_same_vector(a: Path, b: Path) -> None:
    va, vb = SteeringVector.load(a), SteeringVector.load(b)
    assert va.layers == vb.layers and vb.metadata["n_examples_gathered"] == 7
    assert va.metadata["effective_top_k"] == vb.metadata["effective_top_k"]  # the per-row k survives a resume
    assert va.metadata["effective_top_k"]["requested"] == GRAINS.top_k
    for layer in va.layers:
        torch.testing.assert_close(va.vectors[layer], vb.vectors[layer], atol=1e-6, rtol=0)
    (_, da, _), (_, db, _) = load_deltas(deltas_path(a)), load_deltas(deltas_path(b))
    for k in da:
        torch.testing.assert_close(da[k][0], db[k][0], atol=1e-6, rtol=0)


def test_interrupted_predict_resumes_from_its_parts(tiny_dir, pairs_file, tmp_path, monkeypatch):
    """A killed predict keeps one part per finished batch; the rerun computes only the missing batches and writes the
    vector of an uninterrupted run."""
    from steering.writer import parts_root

    ref, vec = tmp_path / "ref.safetensors", tmp_path / "v.safetensors"
    assert _predict(monkeypatch, tiny_dir, pairs_file, ref).calls == 4
    _interrupt(monkeypatch, tiny_dir, pairs_file, vec)
    assert _predict(monkeypatch, tiny_dir, pairs_file, vec).calls == 2  # batches 3 and 4 only
    _assert_same_vector(ref, vec)
    assert not parts_root(vec).exists()


def test_changed_setting_does_not_reuse_parts(tiny_dir, pairs_file, tmp_path, monkeypatch):
    from steering.writer import parts_root

    ref, vec = tmp_path / "ref.safetensors", tmp_path / "v.safetensors"
    other = replace(GRAINS, ig_steps=5)
    _predict(monkeypatch, tiny_dir, pairs_file, ref, grains=other)
    old = _interrupt(monkeypatch, tiny_dir, pairs_file, vec)
    assert _predict(monkeypatch, tiny_dir, pairs_file, vec, grains=other).calls == 4  # nothing reused
    _assert_same_vector(ref, vec)
    assert all(p.is_file() for p in old)  # the other setting's parts are not this run's to remove
    assert [p.name for p in parts_root(vec).iterdir()] == [old[0].parent.name]


def test_parts_are_written_per_batch_and_removed_after_success(tiny_dir, pairs_file, tmp_path, monkeypatch):
    from steering.writer import parts_root

    vec = tmp_path / "v.safetensors"
    seen: list[int] = []

    class Watch(L.Callback):
        def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.append(len(list(parts_root(vec).glob("*/part-*.safetensors"))))

    counter = _Counting()
    monkeypatch.setattr("steering.module.example_deltas", counter)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Watch()])  # fmt: skip
    trainer.predict(_module(tiny_dir, vec), datamodule=_dm(tiny_dir, pairs_file, n_steer=7, n_dev=2, n_test=3))
    assert seen == [0, 1, 2, 3] and counter.calls == 4  # each batch's part exists before the next starts
    assert not parts_root(vec).exists() and vec.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.deltas.safetensors", "v.safetensors", "v.splits.json"]


def test_unreadable_or_foreign_part_is_recomputed_with_a_warning(tiny_dir, pairs_file, tmp_path, monkeypatch):
    from lmcore.tensor_files import load_tensors, save_tensors

    ref, vec = tmp_path / "ref.safetensors", tmp_path / "v.safetensors"
    _predict(monkeypatch, tiny_dir, pairs_file, ref)
    broken, foreign = _interrupt(monkeypatch, tiny_dir, pairs_file, vec)
    broken.write_bytes(b"\x00" * 5)  # a torn write from outside the atomic writer
    tensors, meta = load_tensors(foreign)
    save_tensors(foreign, tensors, {**meta, "key": "0" * 64})
    with pytest.warns(UserWarning) as record:
        assert _predict(monkeypatch, tiny_dir, pairs_file, vec).calls == 4
    messages = [str(w.message) for w in record if "ignoring saved predict part" in str(w.message)]
    assert any(str(broken) in m and "unreadable" in m for m in messages)
    assert any(str(foreign) in m and "key" in m for m in messages)
    _assert_same_vector(ref, vec)
