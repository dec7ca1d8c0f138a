"""The sentiment steering task: SST-2 rows → continuation examples, batched greedy continuations, a classifier judge.

Invariants (tiny random Llama / GPT-2 built in code, a tiny BERT judge exported with ``cap_lightning.export``):
batched generation equals one prompt at a time; α = 0 leaves the continuations of the base model unchanged; the
judge's rates are exactly those of a deterministic toy judge on the returned texts; the exported judge gives the
same probabilities through ``ClassifierJudge`` as its own module; the steering triples never share a sentence with
each other or with an evaluation prompt; bad arguments fail before any model loads, naming the problem.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import lightning as L
import pytest
import torch

from steering import GrainsConfig, SteeringVector
from steering.data import SteeringDataModule
from steering.hooks import steer
from steering.module import SteeringModule
from steering.tasks import ContinuationExample, load_task
from steering.tasks.classifier_judge import ClassifierJudge, check_classifier_judge, label_scores
from steering.tasks.continuations import continuation_nll, generate_continuations, judged_continuations
from steering.tasks.sentiment import ANTONYMS, FRAMES, detokenize
from tests.tiny_lm import LM_WORDS

PROMPTS = ["q what is", "the sky is blue and", "cats", "is water wet or dry what do people say"]
TASK_ARGS = dict(prompt_words=2, pair_words=4, min_words=3, max_words=12, template="q {text}")


def _toy_judge(texts):
    """Positive iff the text contains the word ``true``: probabilities (N, 2), label 1 = positive."""
    return torch.tensor([[0.0, 1.0] if "true" in t.split() else [1.0, 0.0] for t in texts], dtype=torch.float64)


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    """A fake SST-2 folder (SST-2/train.tsv, test.tsv) over the tiny LM's words: 10 held-out, 30 + 30 train rows."""
    root = tmp_path_factory.mktemp("sst2")
    (root / "SST-2").mkdir()
    rng = random.Random(0)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(LM_WORDS) for _ in range(n)) + " ."

    test = [(sentence(rng.randint(4, 8)), i % 2) for i in range(10)] + [("too short", 1)]
    train = [(sentence(rng.randint(3, 10)), i % 2) for i in range(60)] + [(sentence(20), 0)]  # too long: unused
    for name, rows in (("test", test), ("train", train)):
        lines = ["sentence\tlabel", *(f"{s} \t{y}" for s, y in rows)]
        (root / "SST-2" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    """A tiny BERT sentiment classifier trained 2 steps with cap_lightning and exported as an HF folder."""
    from cap_lightning.export import export_classifier
    from cap_lightning.module import CapModule
    from tests.helpers import quiet_trainer, tiny_datamodule
    from tests.tiny import save_tiny_classifier

    folder = tmp_path_factory.mktemp("judge")
    model_dir = save_tiny_classifier(folder / "base", num_labels=2)
    module = CapModule(model_path=str(model_dir), prior_weight=0.0, lr=1e-2, faithfulness=False)
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(module, datamodule=tiny_datamodule(model_dir))
    trainer.save_checkpoint(folder / "best.ckpt", weights_only=False)
    return export_classifier(folder / "best.ckpt", folder / "judge")


def _vector(model, layers=(1, 2), seed=0) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    d = model.config.hidden_size
    return SteeringVector({layer: torch.randn(d, generator=g) for layer in layers}, {"num_layers": 3})


# ---- the task ------------------------------------------------------------------------------------------------
def test_rows_bundle_a_held_out_prompt_with_a_disjoint_training_triple(sst2_dir):
    rows = load_task("sentiment", None, data_dir=str(sst2_dir), pairs="sentences", **TASK_ARGS)
    assert len(rows) == 10 and all(isinstance(r, ContinuationExample) for r in rows)  # "too short" dropped
    train = (sst2_dir / "SST-2" / "train.tsv").read_text().splitlines()[1:]
    used = [i for r in rows for i in r.meta["pair_rows"]]
    assert len(used) == len(set(used))  # no training sentence serves twice
    for r in rows:
        context, good, bad = (train[i].split("\t") for i in r.meta["pair_rows"])
        assert (good[1], bad[1]) == ("1", "0")
        assert r.preferred == " " + detokenize(good[0]) and r.dispreferred == " " + detokenize(bad[0])
        assert r.pair_prompt == "q " + detokenize(" ".join(context[0].split()[:4]))
        assert r.prompt == "q " + r.meta["opening"] and len(r.meta["opening"].split()) == 2
        pair = r.to_pair()
        assert (pair.prompt, pair.preferred, pair.dispreferred) == (r.pair_prompt, r.preferred, r.dispreferred)
    assert [r.meta["pair_rows"] for r in rows] == [r.meta["pair_rows"] for r in load_task(
        "sentiment", None, data_dir=str(sst2_dir), pairs="sentences", **TASK_ARGS)]  # fmt: skip
    other = load_task("sentiment", None, data_dir=str(sst2_dir), seed=1, pairs="sentences", **TASK_ARGS)
    assert [r.prompt for r in other] == [r.prompt for r in rows] and other[0].meta != rows[0].meta


def test_minimal_pairs_differ_in_one_antonym_only(sst2_dir):
    rows = load_task("sentiment", None, data_dir=str(sst2_dir), **TASK_ARGS)  # the default: minimal
    sentences = load_task("sentiment", None, data_dir=str(sst2_dir), pairs="sentences", **TASK_ARGS)
    assert [(r.prompt, r.pair_prompt) for r in rows] == [(r.prompt, r.pair_prompt) for r in sentences]
    for r in rows:
        good, bad = r.preferred.split(), r.dispreferred.split()
        diff = [(a, b) for a, b in zip(good, bad, strict=True) if a != b]
        assert len(diff) == 1 and r.preferred.startswith(" ")
        word_pos, word_neg = (w.strip(".,") for w in diff[0])
        assert (word_pos, word_neg) in ANTONYMS
        assert any(r.preferred == " " + f.format(word_pos) for f in FRAMES)
    assert len({(r.preferred, r.dispreferred) for r in rows}) > 1  # drawn per row, not one pair for all
    again = load_task("sentiment", None, data_dir=str(sst2_dir), **TASK_ARGS)
    assert [(r.preferred, r.dispreferred) for r in again] == [(r.preferred, r.dispreferred) for r in rows]
    with pytest.raises(ValueError, match="pairs 'words' is not one of"):
        load_task("sentiment", None, data_dir=str(sst2_dir), pairs="words", **TASK_ARGS)


def test_prompt_label_keeps_the_openings_of_one_label_only(sst2_dir):
    every = load_task("sentiment", None, data_dir=str(sst2_dir), **TASK_ARGS)
    for label in ("negative", "positive"):
        rows = load_task("sentiment", None, data_dir=str(sst2_dir), prompt_label=label, **TASK_ARGS)
        assert rows and all(r.meta["label"] == label for r in rows)
        assert [r.prompt for r in rows] == [r.prompt for r in every if r.meta["label"] == label]
    with pytest.raises(ValueError, match="prompt_label 'neutral' is not one of"):
        load_task("sentiment", None, data_dir=str(sst2_dir), prompt_label="neutral", **TASK_ARGS)


def test_detokenize_rejoins_sst2_tokens():
    assert detokenize("it 's a charming , often affecting journey . ") == "It's a charming, often affecting journey."
    assert detokenize("does n't work -lrb- at all -rrb- ") == "Doesn't work (at all)"


def test_bad_task_arguments(sst2_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_task("sentiment", None, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="prompt_words 0"):
        load_task("sentiment", None, data_dir=str(sst2_dir), prompt_words=0)
    with pytest.raises(ValueError, match="exactly one"):
        load_task("sentiment", None, data_dir=str(sst2_dir), template="no field")
    with pytest.raises(ValueError, match="rows need"):  # 10 rows need 20 of each label; min_words 9 leaves fewer
        load_task("sentiment", None, data_dir=str(sst2_dir), **{**TASK_ARGS, "min_words": 9})


# ---- generation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_generation_equals_one_prompt_at_a_time(family):
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    model, tok = tiny_causal_lm(family), tiny_lm_tokenizer()
    one = [generate_continuations(model, tok, [p], n_tokens=6)[0] for p in PROMPTS]
    for bs in (2, 4):
        batched = generate_continuations(model, tok, PROMPTS, n_tokens=6, batch_size=bs)
        assert [b.tolist() for b in batched] == [o.tolist() for o in one]
    with steer(model, _vector(model), 4.0):  # under steering hooks as well
        s_one = [generate_continuations(model, tok, [p], n_tokens=6)[0] for p in PROMPTS]
        s_batched = generate_continuations(model, tok, PROMPTS, n_tokens=6, batch_size=4)
    assert [b.tolist() for b in s_batched] == [o.tolist() for o in s_one]
    nll_one = torch.cat([continuation_nll(model, tok, [p], [y]) for p, y in zip(PROMPTS, one)])
    assert torch.allclose(continuation_nll(model, tok, PROMPTS, one, batch_size=4), nll_one, atol=1e-5)


def test_generation_matches_a_full_recompute_and_stops_at_eos(model_tok):
    model, tok = model_tok
    ids = tok(PROMPTS[1], return_tensors="pt").input_ids
    for _ in range(5):  # greedy by full forwards, no cache
        ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    got = generate_continuations(model, tok, [PROMPTS[1]], n_tokens=5)[0]
    eos = tok.eos_token_id
    expected = ids[0, -5:]
    hit = (expected == eos).nonzero()
    assert got.tolist() == (expected[: int(hit[0]) + 1] if len(hit) else expected).tolist()
    assert 1 <= len(got) <= 5


def test_alpha_zero_leaves_continuations_identical(model_tok):
    model, tok = model_tok
    base = judged_continuations(model, tok, PROMPTS, _toy_judge, 1, n_tokens=6, batch_size=2)
    zero = judged_continuations(model, tok, PROMPTS, _toy_judge, 1, n_tokens=6, batch_size=2,
                                steering=lambda: steer(model, _vector(model), 0.0))  # fmt: skip
    assert zero.texts == base.texts and [a.tolist() for a in zero.ids] == [b.tolist() for b in base.ids]
    assert torch.equal(zero.nll, base.nll) and torch.equal(zero.p_positive, base.p_positive)
    strong = judged_continuations(model, tok, PROMPTS, _toy_judge, 1, n_tokens=6, batch_size=2,
                                  steering=lambda: steer(model, _vector(model), 50.0))  # fmt: skip
    assert strong.texts != base.texts  # the hooks do act during generation


def test_rates_of_a_toy_judge_are_exact(model_tok):
    scores = label_scores(_toy_judge, ["a true story", "false", "true", "untrue"], target=1)
    assert scores["positive_rate"].tolist() == [1.0, 0.0, 1.0, 0.0] and scores["p_positive"].mean() == 0.5
    assert label_scores(_toy_judge, ["true", "no"], target=0)["positive_rate"].tolist() == [0.0, 1.0]
    model, tok = model_tok
    out = judged_continuations(model, tok, PROMPTS * 3, _toy_judge, 1, n_tokens=8, batch_size=4)
    expected = [float("true" in t.split()) for t in out.texts]
    assert out.positive_rate.tolist() == expected and out.p_positive.tolist() == expected
    assert out.nll.shape == (12,) and bool((out.nll > 0).all())
    assert out.metrics()["continuation_tokens"].tolist() == [float(len(y)) for y in out.ids]
    with pytest.raises(ValueError, match="shape"):
        label_scores(lambda texts: torch.zeros(len(texts), 2), ["a"], target=2)


# ---- the judge -----------------------------------------------------------------------------------------------
def test_exported_judge_gives_its_classifiers_probabilities(judge_dir):
    from lmcore.models import load_classifier, load_tokenizer

    spec = check_classifier_judge(str(judge_dir), "positive")
    assert spec.labels == ("negative", "positive") and spec.target == 1
    judge = ClassifierJudge(spec, batch_size=2)
    texts = ["a good movie", "an awful , boring film", "", "i love it and it was great fun"]
    model, tok = load_classifier(str(judge_dir), 2).eval(), load_tokenizer(str(judge_dir))
    with torch.no_grad():
        expected = torch.cat([model(**tok([t], return_tensors="pt")).logits.double().softmax(-1) for t in texts])
    assert torch.allclose(judge(texts), expected, atol=1e-6)


def test_bad_judge_arguments_fail_before_any_model_loads(judge_dir, tmp_path, monkeypatch, tiny_dir):
    import steering.module as steering_module
    from lmcore import models

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(steering_module, "load_model_and_tokenizer", boom)
    monkeypatch.setattr(models, "load_classifier", boom)
    missing = tmp_path / "no_judge"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        SteeringModule(model_path=str(tiny_dir), judge_model=str(missing))
    with pytest.raises(ValueError, match=r"'happy' is not among the judge's labels \['negative', 'positive'\]"):
        SteeringModule(model_path=str(tiny_dir), judge_model=str(judge_dir), positive_label="happy")
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ValueError, match="not a sequence classifier"):
        SteeringModule(model_path=str(tiny_dir), judge_model=str(tmp_path / "lm"))
    with pytest.raises(ValueError, match="max_new_tokens 0"):
        SteeringModule(model_path=str(tiny_dir), judge_model=str(judge_dir), max_new_tokens=0)
    with pytest.raises(ValueError, match="judge_batch_size 0"):
        SteeringModule(model_path=str(tiny_dir), judge_model=str(judge_dir), judge_batch_size=0)
    with pytest.raises(ValueError, match="n_tokens 0"):
        generate_continuations(None, None, ["x"], n_tokens=0)


# ---- through Lightning ---------------------------------------------------------------------------------------
def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def _dm(tiny_dir, sst2_dir) -> SteeringDataModule:
    return SteeringDataModule(model_path=str(tiny_dir), task="sentiment", task_args={"data_dir": str(sst2_dir),
                              **TASK_ARGS}, n_steer=4, n_dev=1, n_test=5, batch_size=2, eval_batch_size=2)  # fmt: skip


def _module(tiny_dir, vec, **kw) -> SteeringModule:
    args = dict(model_path=str(tiny_dir), layers=[1, 2], grains=GrainsConfig(top_k=2, ig_steps=4), alpha=4.0,
                vector_path=str(vec), max_new_tokens=5, score_batch_size=3)  # fmt: skip
    return SteeringModule(**{**args, **kw})


def test_predict_then_test_keeps_every_per_prompt_value(tiny_dir, sst2_dir, judge_dir, tmp_path, monkeypatch):
    vec = tmp_path / "v.safetensors"
    _trainer().predict(_module(tiny_dir, vec), datamodule=_dm(tiny_dir, sst2_dir))
    assert SteeringVector.load(vec).metadata["n_examples_gathered"] == 4

    module = _module(tiny_dir, vec, judge_model=str(judge_dir))
    _trainer().test(module, datamodule=_dm(tiny_dir, sst2_dir))
    res = module.test_results
    assert res["test/n_examples"] == 5
    for cond in ("base", "steered"):
        assert 0 <= res[f"test/{cond}/positive_rate"] <= 1 and 0 <= res[f"test/{cond}/p_positive"] <= 1
        assert res[f"test/{cond}/continuation_ppl"] > 1
    assert res["test/steered/kl"] > 0
    record = json.loads(vec.with_name("v.test.json").read_text())
    per = record["per_example"]
    metrics = ("p_positive", "positive_rate", "continuation_nll", "continuation_tokens")
    assert set(per) == {f"{c}/{m}" for c in ("base", "steered") for m in metrics} | {"steered/kl", "base/nll",
                                                                                     "steered/nll"}  # fmt: skip
    assert all(1 <= n <= 5 for n in per["steered/continuation_tokens"]["value"])
    assert all(v["index"] == list(range(5)) for v in per.values())
    for name, values in per.items():
        assert sum(values["value"]) / 5 == pytest.approx(res[f"test/{name}"])
    judge = ClassifierJudge(check_classifier_judge(str(judge_dir), "positive"))
    texts = [record["continuations"][str(i)]["steered"] for i in range(5)]
    assert per["steered/p_positive"]["value"] == pytest.approx(judge(texts)[:, 1].tolist())

    zero = _module(tiny_dir, vec, judge_model=str(judge_dir), alpha=0.0)
    _trainer().test(zero, datamodule=_dm(tiny_dir, sst2_dir))
    assert all(c["base"] == c["steered"] for c in zero.test_continuations.values())
    assert zero.test_results["test/steered/p_positive"] == zero.test_results["test/base/p_positive"]

    import steering.module as steering_module

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(steering_module, "load_model_and_tokenizer", boom)
    with pytest.raises(ValueError, match="judge_model"):
        _trainer().test(_module(tiny_dir, vec), datamodule=_dm(tiny_dir, sst2_dir))


def test_real_sst2_rows_keep_evaluation_and_steering_data_apart(shared_data):
    rows = load_task("sentiment", None, data_dir=str(shared_data / "sst2"))
    assert len(rows) == len({r.meta["row"] for r in rows}) > 800  # one row per held-out sentence of >= 6 words
    assert {r.meta["label"] for r in rows} == {"negative", "positive"}
    used = [i for r in rows for i in r.meta["pair_rows"]]
    assert len(used) == len(set(used))
    prompts = {r.prompt for r in rows}
    assert not prompts & {r.pair_prompt for r in rows}
    assert all(r.prompt.startswith("Movie review: ") and r.preferred.startswith(" ") for r in rows)
