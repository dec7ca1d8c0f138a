"""Adversarial splits without TextAttack: metrics, recipe validation, chunked resumption, victim checks,
keyword injection (pure parts and an end-to-end run with a scripted generator), and the robustness callback."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from cap_lightning.adversarial import keyword_injection as ki
from cap_lightning.adversarial.chunks import ChunkStore, entry_key, run_chunks
from cap_lightning.adversarial.format import AdversarialExample, read_adversarial_jsonl, write_adversarial_jsonl
from cap_lightning.adversarial.generator import AttackGenerator, LoadedVictim, Run, generate
from cap_lightning.adversarial.metrics import robustness_from_predictions, robustness_from_statuses
from cap_lightning.adversarial.recipes import OFFLINE_RECIPES, RECIPES, RecipeUnavailableError, check_recipe
from cap_lightning.adversarial.results import load_robustness, run_folder, save_robustness
from cap_lightning.adversarial.source import Selection, select_examples
from cap_lightning.adversarial.victim import (
    check_label_count,
    inspect_victim,
)
from cap_lightning.classifier import load_trained_classifier, predict_logits, weights_sha256
from cap_lightning.datasets import CustomData, LabelledSplits, TextExample, load_splits
from tests.helpers import FIXTURES, tiny_datamodule


def _tiny_splits():
    return load_splits(
        "custom",
        custom=CustomData(
            train_file=str(FIXTURES / "sentiment_train.csv"),
            test_file=str(FIXTURES / "sentiment_test.csv"),
            label_names=["negative", "positive"],
        ),
    )


# ------------------------------------------------------------------------------------------------------ metrics
def test_metrics_on_a_hand_made_split():
    # labels / clean / attacked predictions for 5 rows:
    # row0 correct -> fooled, row1 correct -> survives, row2 wrong clean, row3 wrong -> right, row4 correct -> fooled
    labels = [0, 1, 2, 0, 1]
    clean = [0, 1, 0, 1, 1]
    attacked = [1, 1, 0, 0, 0]
    r = robustness_from_predictions(labels, clean, attacked)
    assert (r.n, r.n_clean_correct, r.n_attacked_correct, r.n_successful) == (5, 3, 2, 2)
    assert r.clean_accuracy == pytest.approx(3 / 5)
    assert r.attacked_accuracy == pytest.approx(2 / 5)
    assert r.attack_success_rate == pytest.approx(2 / 3)
    d = r.as_dict("adv/")
    assert d["adv/attack_success_rate"] == pytest.approx(2 / 3) and all(k.startswith("adv/") for k in d)


def test_status_metrics_equal_prediction_metrics_on_the_victim():
    statuses = ["successful", "failed", "skipped", "successful", "failed", "failed"]
    labels = [1] * len(statuses)
    # what the victim predicts given each status: skipped = wrong on clean (text unchanged)
    clean = [0 if s == "skipped" else 1 for s in statuses]
    attacked = [1 if s == "failed" else 0 for s in statuses]
    assert robustness_from_statuses(statuses) == robustness_from_predictions(labels, clean, attacked)


def test_metrics_edge_cases():
    assert math.isnan(robustness_from_statuses(["skipped", "skipped"]).attack_success_rate)
    with pytest.raises(ValueError, match="not in"):
        robustness_from_statuses(["ok"])
    with pytest.raises(ValueError, match="empty"):
        robustness_from_statuses([])
    with pytest.raises(ValueError, match="same length"):
        robustness_from_predictions([0, 1], [0], [0, 1])


# ----------------------------------------------------------------------------------------------------- recipes
def test_recipe_names_are_validated_without_importing_textattack():
    for name in OFFLINE_RECIPES:
        assert check_recipe(name).offline
    assert check_recipe("DeepWordBug") is RECIPES["deepwordbug"]
    assert check_recipe("input-reduction") is RECIPES["input_reduction"]
    with pytest.raises(ValueError, match="does not exist") as err:
        check_recipe("deepwordbugg")
    assert "deepwordbug" in str(err.value) and "pwws" in str(err.value)
    with pytest.raises(RecipeUnavailableError, match="paragramcf"):
        check_recipe("textfooler")
    assert not check_recipe("textfooler", allow_downloads=True).offline
    assert {"deepwordbug", "pwws", "pruthi", "input_reduction"} <= set(OFFLINE_RECIPES)


def test_cli_rejects_an_unknown_recipe_before_loading_anything(capsys):
    from cap_lightning.adversarial.__main__ import main

    with pytest.raises(ValueError, match="does not exist"):
        main(["textattack", "--ckpt", "missing.ckpt", "--dataset", "nope", "--recipe", "nosuch"])
    assert main(["recipes"]) == 0
    assert "deepwordbug" in capsys.readouterr().out


def test_cli_bad_input_is_one_error_line(monkeypatch, capsys):
    from cap_lightning.adversarial.__main__ import _entry

    argv = ["prog", "textattack", "--ckpt", "m.ckpt", "--dataset", "banking77", "--recipe", "textfooler"]
    monkeypatch.setattr(sys, "argv", argv)
    assert _entry() == 2
    err = capsys.readouterr().err
    assert err.startswith("error: recipe 'textfooler'") and "paragramcf" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------------------ source
def test_selection_is_seeded_sorted_and_fingerprinted():
    splits = _tiny_splits()
    a, b = select_examples(splits, "train", 5, seed=3), select_examples(splits, "train", 5, seed=3)
    assert a == b and list(a.indices) == sorted(a.indices) and len(a.indices) == 5
    assert all(splits.train[i] == e for i, e in zip(a.indices, a.examples))
    assert a.fingerprint() != select_examples(splits, "train", 5, seed=4).fingerprint()
    assert select_examples(splits, "test", None).indices == tuple(range(len(splits.test)))
    with pytest.raises(ValueError, match="split 'dev'"):
        select_examples(splits, "dev")


# ------------------------------------------------------------------------------------------------------ chunks
def _rows(positions, tag="x"):
    return [AdversarialExample(f"{tag}{p}", p % 2, f"o{p}", "deepwordbug", "failed", 1, 100 + p) for p in positions]


def test_chunk_store_resumes_without_redoing_finished_chunks(tmp_path):
    description = {"recipe": "deepwordbug", "n": 7}
    folder = tmp_path / entry_key(description)
    calls: list[int] = []

    def crashing(positions):
        if positions.start >= 4:
            raise KeyboardInterrupt  # interrupted in the middle of the run
        calls.extend(positions)
        return _rows(positions)

    index_of = lambda p: 100 + p  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_chunks(ChunkStore(folder, description, 7, 2), index_of, crashing, "t", progress=False)
    assert calls == [0, 1, 2, 3]

    def counting(positions):
        calls.extend(positions)
        return _rows(positions)

    calls.clear()
    rows, computed = run_chunks(ChunkStore(folder, description, 7, 2), index_of, counting, "t", progress=False)
    assert calls == [4, 5, 6] and computed == 2
    assert rows == _rows(range(7))
    calls.clear()
    assert run_chunks(ChunkStore(folder, description, 7, 2), index_of, counting, "t", progress=False) == (rows, 0)
    assert calls == []


def test_chunk_store_redoes_damaged_chunks_and_rejects_a_foreign_entry(tmp_path):
    description = {"n": 4}
    store = ChunkStore(tmp_path / "e", description, 4, 2)
    index_of = lambda p: 100 + p  # noqa: E731
    run_chunks(store, index_of, _rows, "t", progress=False)
    store.path(1).write_text('{"text": "trunc')  # a torn write
    write_adversarial_jsonl(store.path(0), _rows([2]))  # rows of another chunk
    done = []
    rows, computed = run_chunks(store, index_of, lambda ps: done.extend(ps) or _rows(ps), "t", progress=False)
    assert computed == 2 and done == [0, 1, 2, 3] and rows == _rows(range(4))
    with pytest.raises(ValueError, match="describes another run"):
        ChunkStore(tmp_path / "e", {"n": 5}, 5, 2)


def test_split_file_round_trip_through_the_data_module(tmp_path, tiny_model_dir):
    rows = _rows(range(5)) + [AdversarialExample("good ünïcode\tfilm", 1, "good film", "pwws", "successful", None, 9)]
    path = tmp_path / "split.jsonl"
    write_adversarial_jsonl(path, rows)
    assert read_adversarial_jsonl(path) == rows
    dm = tiny_datamodule(tiny_model_dir, split="adversarial", adversarial_file=str(path))
    dm.setup("test")
    assert [(e.text, e.label) for e in dm.splits.test] == [(r.text, r.label) for r in rows]


# ------------------------------------------------------------------------------------------------------ victim
def test_victim_label_count_mismatch_is_an_error_before_loading(tiny_model_dir, tmp_path):
    info = inspect_victim(str(tiny_model_dir))
    assert info.num_labels == 2 and info.kind == "hf"
    with pytest.raises(ValueError, match="has 2 labels but the data has 77"):
        check_label_count(info, 77, "the data")
    with pytest.raises(FileNotFoundError, match="train the baseline first"):
        inspect_victim(str(tmp_path / "missing.ckpt"))
    three = LabelledSplits(
        "toy", ["a", "b", "c"], [TextExample("x y", 2)], [TextExample("y", 1)], [TextExample("z", 0)]
    )
    with pytest.raises(ValueError, match="has 2 labels but dataset toy has 3"):
        ki.generate_injection(str(tiny_model_dir), three, select_examples(three), cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_a_victim_checkpoint_is_described_from_metadata(tiny_model_dir, tmp_path):
    from cap_lightning.module import CapModule

    module = CapModule(model_path=str(tiny_model_dir), num_labels=2, prior_weight=0.0)
    module.configure_model()
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(ckpt | {"pytorch-lightning_version": L.__version__}, tmp_path / "v.ckpt")
    info = inspect_victim(str(tmp_path / "v.ckpt"))
    assert (info.kind, info.num_labels, info.tokenizer_path) == ("ckpt", 2, str(tiny_model_dir))
    with pytest.raises(ValueError, match="has 2 labels but"):
        check_label_count(info, 3, "the data")
    model, tok = load_trained_classifier(info)
    texts = ["very good and fun", "hate the film"]
    assert torch.equal(predict_logits(model, tok, texts), predict_logits(module.model.eval(), tok, texts))
    assert weights_sha256(info.path) == weights_sha256(inspect_victim(str(tmp_path / "v.ckpt")).path)


# ------------------------------------------------------------------------------------------- keyword injection
def test_confusion_pairs_and_keywords():
    cm = ki.confusion_matrix([0, 0, 1, 1, 2, 2], [1, 0, 0, 1, 2, 2], 3)
    assert cm == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert ki.confusable_pairs(cm) == {0: 1, 1: 0}  # class 2 is never confused: no partner
    texts = ["my card is lost", "lost card again", "transfer money now", "money transfer failed", "the the the"]
    kws = ki.class_keywords(texts, [0, 0, 1, 1, 2], 3, k=2)
    assert kws[0] == ["card", "lost"] and kws[1] == ["money", "transfer"]
    assert "the" not in kws[2] or kws[2] == ["the"]  # a function word only wins where it is all a class has


def test_validity_filter_reasons():
    config = ki.InjectionConfig()
    original = "how do i top up my card"
    assert ki.validity_reason(original, "how do i top up my card with a transfer", ["transfer"], config) is None
    assert ki.validity_reason(original, "", ["transfer"], config) == "empty"
    assert ki.validity_reason(original, original.upper(), ["transfer"], config) == "unchanged"
    assert ki.validity_reason(original, "how do i top up my card please", ["transfer"], config) == "no_keyword"
    assert ki.validity_reason(original, "transfer", ["transfer"], config) == "length"
    echo = "rewritten message: how do i top up my card with a transfer"
    assert ki.validity_reason(original, echo, ["transfer"], config) == "prompt_echo"
    assert ki.validity_reason(original, "what about a transfer of money abroad", ["transfer"], config) == "content_lost"
    assert set(ki.REJECT_REASONS) >= {"empty", "unchanged", "prompt_echo", "no_keyword", "length", "content_lost"}
    assert ki.clean_generation('\n Rewritten message: "Hello there"\nmore') == "Hello there"


def test_prompt_is_versioned():
    prompt = ki.build_prompt("lost my card", "lost_or_stolen_card", "card_arrival", ["arrive", "delivery"])
    assert "lost or stolen card" in prompt and "arrive, delivery" in prompt and "lost my card" in prompt
    assert ki.PROMPT_VERSION and len(ki.PROMPT_SHA256) == 64


def _scripted_rewrites(model, tokenizer, prompts, max_new_tokens, batch_size):
    """Stands in for the LLM: appends the first offered keyword, except for one prompt it leaves unchanged."""
    out = []
    for i, prompt in enumerate(prompts):
        text = re.search(r"Message: (.*)\n", prompt).group(1)
        keyword = re.search(r"uses these words: ([^,.\n]+)", prompt).group(1)
        out.append(text if i == 0 else f"{text} {keyword}")
    return out


def test_keyword_injection_end_to_end_is_filtered_versioned_and_resumable(tiny_model_dir, tmp_path, monkeypatch):
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    llm_dir = tmp_path / "llm"
    tiny_causal_lm("llama").save_pretrained(llm_dir)
    tiny_lm_tokenizer().save_pretrained(llm_dir)
    splits = _tiny_splits()
    selection = select_examples(splits, "train", 12, seed=0)
    config = ki.InjectionConfig(generator=str(llm_dir), n_keywords=2, min_content_overlap=0.0, min_lift=1.0)
    calls = []

    def scripted(*args):
        calls.append(len(args[2]))
        return _scripted_rewrites(*args)

    monkeypatch.setattr(ki, "generate_rewrites", scripted)
    kw = dict(pairs_split="train", cache_dir=tmp_path / "cache", chunk_size=4, progress=False)
    try:
        result = ki.generate_injection(str(tiny_model_dir), splits, selection, config, out=tmp_path / "inj.jsonl", **kw)
    except ValueError as err:  # the random tiny victim may be right on nothing
        assert "nothing to attack" in str(err)
        pytest.skip("tiny victim classifies nothing correctly")
    rows = read_adversarial_jsonl(result.out)
    assert rows and all(r.recipe == ki.RECIPE and r.text != r.original_text for r in rows)
    assert all(r.index in selection.indices for r in rows)
    manifest = json.loads(Path(f"{result.out}.manifest.json").read_text())
    assert manifest["description"]["prompt_version"] == ki.PROMPT_VERSION
    assert manifest["n_kept"] == len(rows) and manifest["rejected"].get("unchanged", 0) >= 1
    assert manifest["n_kept"] + sum(manifest["rejected"].values()) == len(selection.indices)
    # statuses agree with the victim's own predictions
    model, tok = load_trained_classifier(inspect_victim(str(tiny_model_dir)))
    clean = predict_logits(model, tok, [r.original_text for r in rows]).argmax(-1).tolist()
    attacked = predict_logits(model, tok, [r.text for r in rows]).argmax(-1).tolist()
    assert (
        robustness_from_statuses([r.status for r in rows]).n_successful
        == robustness_from_predictions([r.label for r in rows], clean, attacked).n_successful
    )
    n_calls = len(calls)
    again = ki.generate_injection(str(tiny_model_dir), splits, selection, config, out=tmp_path / "inj2.jsonl", **kw)
    assert len(calls) == n_calls and again.chunks_computed == 0 and again.rows == result.rows


def test_real_generation_with_a_tiny_causal_lm():
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    out = ki.generate_rewrites(tiny_causal_lm("llama"), tiny_lm_tokenizer(), ["q is the sky blue", "q a"], 3, 2)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_injection_refuses_a_victim_that_is_never_right(tiny_model_dir, tmp_path):
    splits = _tiny_splits()
    model, tok = load_trained_classifier(inspect_victim(str(tiny_model_dir)))
    texts = [e.text for e in splits.train]
    pred = predict_logits(model, tok, texts).argmax(-1).tolist()
    wrong = Selection("train", tuple(range(len(texts))), tuple(TextExample(t, 1 - p) for t, p in zip(texts, pred)))
    config = ki.InjectionConfig(generator=str(tiny_model_dir))
    with pytest.raises(ValueError, match="nothing to attack"):
        ki.generate_injection(str(tiny_model_dir), splits, wrong, config, cache_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------------- callback
def test_robustness_callback_logs_metrics_of_the_tested_model(tiny_model_dir, tmp_path):
    from cap_lightning.adversarial.callback import RobustnessCallback
    from cap_lightning.module import CapModule

    originals = ["very good and fun", "i love this film", "hate the film", "bad film i hate", "what a great film"]
    attacked = ["very god and fun", "i lvoe this film", "hate the film", "bad fiml i hate", "what a great film"]
    labels = [1, 1, 0, 0, 1]
    statuses = ["successful", "failed", "skipped", "successful", "failed"]
    rows = [
        AdversarialExample(t, y, o, "deepwordbug", s, 3, i)
        for i, (t, y, o, s) in enumerate(zip(attacked, labels, originals, statuses))
    ]
    path = tmp_path / "adv.jsonl"
    write_adversarial_jsonl(path, rows)
    dm = tiny_datamodule(tiny_model_dir, split="adversarial", adversarial_file=str(path))
    module = CapModule(model_path=str(tiny_model_dir), prior_weight=0.0)
    callback = RobustnessCallback()
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[callback],
        default_root_dir=tmp_path,
    )
    (result,) = trainer.test(module, datamodule=dm)
    model, tok = module.model, dm.tokenizer
    expected = robustness_from_predictions(
        labels,
        predict_logits(model, tok, originals, max_length=16).argmax(-1).tolist(),
        predict_logits(model, tok, attacked, max_length=16).argmax(-1).tolist(),
    )
    assert result["adv/clean_acc"] == pytest.approx(expected.clean_accuracy)
    assert result["adv/attacked_acc"] == pytest.approx(expected.attacked_accuracy)
    assert result["adv/attacked_acc"] == pytest.approx(result["test/acc"])  # same texts, same model
    assert result["adv/victim_attack_success_rate"] == pytest.approx(2 / 4)
    if expected.n_clean_correct:
        assert result["adv/attack_success_rate"] == pytest.approx(expected.attack_success_rate)
    saved = load_robustness(tmp_path)  # beside the run, for the reproduction table
    assert saved["deepwordbug/attacked_acc"] == pytest.approx(expected.attacked_accuracy)


def test_robustness_results_live_in_the_run_folder(tmp_path):
    split = tmp_path / "s.jsonl"
    write_adversarial_jsonl(split, _rows(range(2)))
    run = tmp_path / "run"
    assert run_folder(str(run / "checkpoints" / "best.ckpt"), tmp_path) == run.resolve()
    assert run_folder(None, tmp_path) == tmp_path
    assert run_folder(str(tmp_path / "baseline.ckpt"), tmp_path) == (tmp_path / "baseline").resolve()
    metrics = {"adv/attacked_acc": 0.25, "adv/attack_success_rate": 0.5, "adv/clean_acc": 0.5}
    save_robustness(run, split, ["pwws"], metrics, None)
    assert load_robustness(run) == {"pwws/attacked_acc": 0.25, "pwws/attack_success_rate": 0.5}
    assert load_robustness(tmp_path / "elsewhere") == {}


# ------------------------------------------------------------------------------------------------------ protocol
class _Echo(AttackGenerator):
    """The smallest generator: every clean text back unchanged (a failed attack; skipped where the victim is wrong)."""

    def __init__(self) -> None:
        self.prepared = 0
        self.correct: list[bool] = []

    def describe(self, selection: Selection) -> dict:
        return {"generator": "echo", "format_version": 1}

    def prepare(self, run: Run, victim: LoadedVictim) -> None:
        self.prepared += 1
        self.correct = victim.correct

    def attack(self, run: Run, positions: range) -> list[AdversarialExample]:
        rows = []
        for p in positions:
            e, status = run.selection.examples[p], "failed" if self.correct[p] else "skipped"
            rows.append(AdversarialExample(e.text, e.label, e.text, "echo", status, 0, run.selection.indices[p]))
        return rows


def test_a_generator_supplies_only_its_own_steps(tiny_model_dir, tmp_path):
    texts = [e.text for e in _tiny_splits().train]
    model, tok = load_trained_classifier(inspect_victim(str(tiny_model_dir)))
    preds = predict_logits(model, tok, texts).argmax(-1).tolist()
    selection = Selection("train", tuple(range(len(texts))), tuple(TextExample(t, y) for t, y in zip(texts, preds)))
    kw = dict(cache_dir=tmp_path, chunk_size=4, progress=False)
    first = _Echo()
    result = generate(first, str(tiny_model_dir), selection, ["negative", "positive"], **kw)
    assert first.prepared == 1 and result.chunks_computed == math.ceil(len(texts) / 4)
    assert read_adversarial_jsonl(result.out) == result.rows and {r.status for r in result.rows} == {"failed"}
    manifest = json.loads(Path(f"{result.out}.manifest.json").read_text())
    assert manifest["key"] == result.key and manifest["description"]["generator"] == "echo"
    assert manifest["set_sha256"] == hashlib.sha256(result.out.read_bytes()).hexdigest()
    again = _Echo()  # every chunk is cached: the victim is not even loaded
    resumed = generate(again, str(tiny_model_dir), selection, ["negative", "positive"], **kw)
    assert again.prepared == 0 and resumed.chunks_computed == 0 and resumed.rows == result.rows
    with pytest.raises(ValueError, match="has 2 labels but the data has 3"):
        generate(_Echo(), str(tiny_model_dir), selection, ["a", "b", "c"], **kw)
