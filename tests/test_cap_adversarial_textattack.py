"""TextAttack generation against a tiny victim (needs the optional extra: make install-adversarial).

Skipped, with the install command as the reason, when textattack or the project's NLTK data is absent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cap_lightning.adversarial.environment import SETUP_COMMAND, nltk_status, textattack_available

if not textattack_available():
    pytest.skip(f"optional extra textattack not installed ({SETUP_COMMAND})", allow_module_level=True)
if not nltk_status(["stopwords"])["stopwords"]:
    pytest.skip(f"project NLTK data missing ({SETUP_COMMAND})", allow_module_level=True)

from cap_lightning.adversarial.environment import import_textattack  # noqa: E402
from cap_lightning.adversarial.format import read_adversarial_jsonl  # noqa: E402
from cap_lightning.adversarial.recipes import RecipeUnavailableError  # noqa: E402
from cap_lightning.adversarial.source import Selection, select_examples  # noqa: E402
from cap_lightning.adversarial.textattack_gen import generate_textattack  # noqa: E402
from cap_lightning.adversarial.victim import inspect_victim  # noqa: E402
from cap_lightning.classifier import load_trained_classifier, predict_logits  # noqa: E402
from cap_lightning.datasets import CustomData, LabelledSplits, TextExample, load_splits  # noqa: E402
from tests.helpers import FIXTURES  # noqa: E402

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def splits():
    return load_splits(
        "custom",
        custom=CustomData(
            train_file=str(FIXTURES / "sentiment_train.csv"),
            test_file=str(FIXTURES / "sentiment_test.csv"),
            label_names=LABELS,
        ),
    )


def _victim_preds(model_dir, texts):
    model, tok = load_trained_classifier(inspect_victim(str(model_dir)))
    return predict_logits(model, tok, texts).argmax(-1).tolist()


def _victim_labelled(model_dir, splits, flip_every: int = 0) -> Selection:
    """Train rows relabelled with the victim's own predictions (all attackable), every ``flip_every``-th flipped."""
    texts = [e.text for e in splits.train]
    preds = _victim_preds(model_dir, texts)
    labels = [1 - p if flip_every and i % flip_every == 0 else p for i, p in enumerate(preds)]
    return Selection("train", tuple(range(len(texts))), tuple(TextExample(t, y) for t, y in zip(texts, labels)))


def test_deepwordbug_rows_agree_with_the_victim(tiny_model_dir, splits, tmp_path):
    selection = _victim_labelled(tiny_model_dir, splits, flip_every=4)
    result = generate_textattack(
        str(tiny_model_dir), selection, LABELS, "deepwordbug", cache_dir=tmp_path, chunk_size=3, progress=False
    )
    rows = read_adversarial_jsonl(result.out)
    assert rows == result.rows and [r.index for r in rows] == list(selection.indices)
    assert [r.original_text for r in rows] == [e.text for e in selection.examples]
    clean = _victim_preds(tiny_model_dir, [r.original_text for r in rows])
    attacked = _victim_preds(tiny_model_dir, [r.text for r in rows])
    for row, c, a in zip(rows, clean, attacked):
        assert (row.status == "skipped") == (c != row.label)
        if row.status == "successful":
            assert a != row.label and row.text != row.original_text and row.queries > 0
        else:
            assert row.text == row.original_text
    assert result.report.n == len(rows) and {r.status for r in rows} >= {"skipped"}
    assert result.report.n_clean_correct == sum(r.status != "skipped" for r in rows) > 0
    manifest = json.loads(Path(f"{result.out}.manifest.json").read_text())
    assert manifest["key"] == result.key and manifest["description"]["recipe"] == "deepwordbug"
    assert manifest["set_sha256"] == hashlib.sha256(result.out.read_bytes()).hexdigest()


def test_interrupted_generation_resumes_without_redoing_examples(tiny_model_dir, splits, tmp_path, monkeypatch):
    textattack = import_textattack()
    selection = _victim_labelled(tiny_model_dir, splits, flip_every=5)
    calls: list[str] = []
    original = textattack.attack.Attack.attack
    limit = {"n": 3}

    def counting(self, example, label):
        if len(calls) >= limit["n"]:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        calls.append(example)
        return original(self, example, label)

    monkeypatch.setattr(textattack.attack.Attack, "attack", counting)
    kw = dict(cache_dir=tmp_path / "cache", chunk_size=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        generate_textattack(str(tiny_model_dir), selection, LABELS, "deepwordbug", out=tmp_path / "a.jsonl", **kw)
    assert not (tmp_path / "a.jsonl").exists()  # no half-written split
    first = list(calls)
    limit["n"] = 10**6
    resumed = generate_textattack(str(tiny_model_dir), selection, LABELS, "deepwordbug", out=tmp_path / "a.jsonl", **kw)
    redone = calls[len(first) :]
    assert not set(first) & set(redone)  # finished examples are not attacked again
    attacked = [r.original_text for r in resumed.rows if r.status != "skipped"]
    assert sorted(first + redone) == sorted(attacked)
    calls.clear()
    fresh_kw = dict(kw, cache_dir=tmp_path / "fresh")
    fresh = generate_textattack(str(tiny_model_dir), selection, LABELS, "deepwordbug", **fresh_kw)
    assert fresh.rows == resumed.rows  # per-example seeds: resuming changes nothing


def test_bad_recipe_fails_before_the_victim_is_touched(splits, tmp_path):
    selection = select_examples(splits, "test")
    with pytest.raises(ValueError, match="does not exist"):
        generate_textattack(str(tmp_path / "missing.ckpt"), selection, LABELS, "wordbug", cache_dir=tmp_path)
    with pytest.raises(RecipeUnavailableError, match="needs"):
        generate_textattack(str(tmp_path / "missing.ckpt"), selection, LABELS, "bert_attack", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_label_count_mismatch_fails_before_work(tiny_model_dir, tmp_path):
    three = LabelledSplits("toy", ["a", "b", "c"], [TextExample("x", 2)], [TextExample("y", 1)], [TextExample("z", 0)])
    with pytest.raises(ValueError, match="has 2 labels but the data has 3"):
        generate_textattack(str(tiny_model_dir), select_examples(three), three.label_names, "pwws", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_nothing_to_attack_is_an_error(tiny_model_dir, splits, tmp_path):
    texts = [e.text for e in splits.train]
    wrong = [TextExample(t, 1 - p) for t, p in zip(texts, _victim_preds(tiny_model_dir, texts))]
    selection = Selection("train", tuple(range(len(texts))), tuple(wrong))
    with pytest.raises(ValueError, match="nothing to attack"):
        generate_textattack(str(tiny_model_dir), selection, LABELS, "deepwordbug", cache_dir=tmp_path, progress=False)


@pytest.mark.parametrize("recipe", ["pwws", "pruthi", "input_reduction"])
def test_other_offline_recipes_run(recipe, tiny_model_dir, splits, tmp_path):
    if recipe == "pwws" and not nltk_status(["wordnet"])["wordnet"]:
        pytest.skip(f"WordNet missing from the project NLTK data ({SETUP_COMMAND})")
    full = _victim_labelled(tiny_model_dir, splits)
    selection = Selection("train", full.indices[:3], full.examples[:3])
    result = generate_textattack(
        str(tiny_model_dir), selection, LABELS, recipe, cache_dir=tmp_path, query_budget=200, progress=False
    )
    rows = result.rows
    assert len(rows) == 3 and {r.recipe for r in rows} == {recipe}
    attacked = _victim_preds(tiny_model_dir, [r.text for r in rows])
    for row, pred in zip(rows, attacked):  # the status invariants hold for every recipe
        assert (pred == row.label) == (row.status == "failed")
    if recipe == "input_reduction":
        assert all(r.status == "failed" and len(r.text.split()) <= len(r.original_text.split()) for r in rows)


def test_missing_nltk_data_is_named_with_the_install_command(monkeypatch, tmp_path):
    import nltk

    from cap_lightning.adversarial.environment import require_nltk

    monkeypatch.setenv("CAP_NLTK_DATA", str(tmp_path))
    monkeypatch.setenv("NLTK_DATA", "")
    monkeypatch.setattr(nltk.data, "path", [])
    with pytest.raises(RuntimeError, match=r"\['wordnet'\].*make install-adversarial"):
        require_nltk(["wordnet"], "recipe 'pwws'")


def test_nltk_downloads_are_blocked_while_textattack_loads():
    import nltk

    from cap_lightning.adversarial.environment import no_nltk_downloads

    original = nltk.download
    with no_nltk_downloads():
        assert nltk.download("omw-1.4") is False  # not installed locally, and no network attempt
        assert nltk.download("stopwords") is True
    assert nltk.download is original
