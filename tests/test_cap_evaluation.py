"""CapModule's test-side evaluation: the stratified faithfulness subset, word-level and normalised faithfulness, and
agreement with priors on held-out texts (HeldOutPriorCallback), for the CE-only baseline too."""

import pytest
import torch

import cap_lightning.module as module_py
from cap_lightning.agreement import prior_agreement
from cap_lightning.module import CapModule
from cap_lightning.priors.callback import PriorCacheCallback
from cap_lightning.priors.held_out import HeldOutPriorCallback
from cap_lightning.stratified import stratified_rows
from cap_lightning.tokens import content_mask, words_to_tokens
from tests.helpers import CountingPrior, quiet_trainer, tiny_datamodule

TEST_LABELS = [1, 1, 1, 0, 1, 0]  # tests/fixtures/sentiment_test.csv (negative = 0, positive = 1)


def _scored_rows(monkeypatch):
    """Record the test rows (index, label) handed to faithfulness_step."""
    seen = []
    step = module_py.faithfulness_step

    def recording(forward_fn, batch, *args, **kwargs):
        seen.extend(zip(batch["index"].tolist(), batch["labels"].tolist(), strict=True))
        return step(forward_fn, batch, *args, **kwargs)

    monkeypatch.setattr(module_py, "faithfulness_step", recording)
    return seen


def test_faithfulness_rows_score_a_stratified_subset_covering_every_class(tiny_model_dir, monkeypatch):
    seen = _scored_rows(monkeypatch)
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness_steps=2, faithfulness_max_batches=1)
    quiet_trainer().test(module, tiny_datamodule(tiny_model_dir, eval_batch_size=2))
    assert {label for _, label in seen} == {1}  # the first batch of this split: one class only
    seen.clear()
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness_steps=2, faithfulness_rows=3,
                       faithfulness_seed=5)  # fmt: skip
    results = quiet_trainer().test(module, tiny_datamodule(tiny_model_dir, eval_batch_size=2))[0]
    assert sorted(i for i, _ in seen) == stratified_rows(TEST_LABELS, 3, 5)
    assert {label for _, label in seen} == {0, 1}  # every class
    assert [TEST_LABELS[i] for i, _ in seen] == [label for _, label in seen]
    # word level by default, normalised comp/suff and the mean p(ŷ|x) beside the raw values
    assert {"test/comp_aopc", "test/comp_norm_aopc", "test/suff_norm_aopc", "test/p_pred"} <= set(results)
    assert 0.5 <= results["test/p_pred"] <= 1.0  # two classes: p(ŷ|x) ≥ 1/2


def test_the_subset_does_not_depend_on_the_batch_size(tiny_model_dir, monkeypatch):
    seen = _scored_rows(monkeypatch)
    picked = []
    for batch_size in (1, 4):
        seen.clear()
        module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness_steps=2, faithfulness_rows=4)
        quiet_trainer().test(module, tiny_datamodule(tiny_model_dir, eval_batch_size=batch_size))
        picked.append(sorted(i for i, _ in seen))
    assert picked[0] == picked[1] == stratified_rows(TEST_LABELS, 4, 0)


def test_baseline_reports_agreement_with_held_out_priors(tiny_model_dir, tmp_path):
    prior = CountingPrior()
    prepared = []
    prior.prepare = lambda texts, labels, num_labels, device, label_names=None: prepared.append(list(texts))
    callbacks = [HeldOutPriorCallback(prior, rows=4, cache_dir=str(tmp_path)),
                 HeldOutPriorCallback(CountingPrior("b"), name="b", rows=None, cache_dir=str(tmp_path))]  # fmt: skip
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness_steps=3, faithfulness=False)
    dm = tiny_datamodule(tiny_model_dir, eval_batch_size=4)
    results = quiet_trainer(callbacks=callbacks).test(module, dm)[0]
    assert "test/prior_spearman" not in results  # no priors on the training texts
    for suffix in ("", "_b"):
        assert -1.0 <= results[f"test/heldout_spearman{suffix}"] <= 1.0
        assert 0.0 <= results[f"test/heldout_topk_iou{suffix}"] <= 1.0
    assert prior.calls == 4  # the held-out subset only
    train_texts = dm.prior_inputs()[0]
    assert prepared == [train_texts]  # prepared on the training split, never on the test texts
    # the logged ρ is the mean of prior_agreement over the held-out rows (the model's IG of the gold label)
    rows = stratified_rows(TEST_LABELS, 4, 0)
    items = [it for it in dm.test_dataloader().dataset if it["index"] in rows]
    batch = dm.test_dataloader().collate_fn(items)
    scores = module.attribute(batch, create_graph=False, steps=3)
    texts = [it["text"] for it in items]
    prior_words = CountingPrior()(texts, [it["label"] for it in items])
    expected = prior_agreement(scores, words_to_tokens(prior_words, batch["word_index"]), batch["word_index"],
                               content_mask(batch))  # fmt: skip
    assert results["test/heldout_spearman"] == pytest.approx(float(expected.spearman.mean()), abs=1e-5)
    assert results["test/heldout_topk_iou"] == pytest.approx(float(expected.topk_iou.mean()), abs=1e-5)
    # a second test reads the held-out priors from the cache
    again = quiet_trainer(callbacks=callbacks[:1]).test(module, dm)[0]
    assert prior.calls == 4 and callbacks[0].last["cache_hit"] is True
    assert again["test/heldout_spearman"] == pytest.approx(results["test/heldout_spearman"], abs=1e-6)


def test_faithfulness_rows_also_bound_the_training_rows_of_the_training_agreement(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):  # fmt: skip
    scored = []
    agree = module_py.prior_agreement

    def recording(scores, *args, **kwargs):
        scored.append(scores.shape[0])
        return agree(scores, *args, **kwargs)

    monkeypatch.setattr(module_py, "prior_agreement", recording)
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness_steps=2, faithfulness_rows=5)
    trainer = quiet_trainer(max_steps=1, callbacks=[PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))])
    trainer.fit(module, tiny_datamodule(tiny_model_dir))  # batch size 4: 4 + 1 rows
    results = trainer.test(module, trainer.datamodule)[0]
    assert scored == [4, 1] and -1.0 <= results["test/prior_spearman"] <= 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"faithfulness_rows": 0}, "faithfulness_rows must be >= 1 or null, got 0"),
        ({"faithfulness_rows": 8, "faithfulness_max_batches": 2}, "set faithfulness_rows .8. or faithfulness_max"),
        ({"faithfulness_level": "token"}, "faithfulness_level 'token' is not one of"),
    ],
)
def test_bad_evaluation_arguments(kwargs, match, tiny_model_dir):
    with pytest.raises(ValueError, match=match):
        CapModule(str(tiny_model_dir), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rows": 0}, "rows must be >= 1 or null, got 0"),
        ({"name": "Bad-Name"}, "name 'Bad-Name' may hold only"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_held_out_callback_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeldOutPriorCallback(CountingPrior(), **kwargs)
    with pytest.raises(TypeError, match="must be an AttributionPrior"):
        HeldOutPriorCallback(object())


def test_the_evaluation_rationale_is_ig_whatever_the_training_attribution(tiny_model_dir, tmp_path):
    """Faithfulness and held-out agreement score the model's IG (faithfulness_steps), so rows trained with
    gradient×input and with IG are measured alike."""
    dm = tiny_datamodule(tiny_model_dir, eval_batch_size=6)
    modules, results = [], []
    for attribution, ig_steps in (("grad_x_input", 4), ("ig", 1), ("expected_gradients", 4)):
        module = CapModule(str(tiny_model_dir), prior_weight=0.0, num_labels=2, attribution=attribution,
                           ig_steps=ig_steps, faithfulness_steps=3, faithfulness=False)  # fmt: skip
        module.configure_model()
        if modules:
            module.load_state_dict(modules[0].state_dict())
        modules.append(module)
        callbacks = [HeldOutPriorCallback(CountingPrior(), rows=None, cache_dir=str(tmp_path))]
        results.append(quiet_trainer(callbacks=callbacks).test(module, dm)[0]["test/heldout_spearman"])
    assert results[0] == pytest.approx(results[1], abs=1e-6) and results[0] == pytest.approx(results[2], abs=1e-6)
    batch = next(iter(dm.test_dataloader()))
    ig = modules[0].attribute(batch, create_graph=False, steps=3, method="ig")
    for module in modules:
        assert torch.allclose(module._rationale(batch, batch["labels"]), ig, atol=1e-6)
    assert not torch.allclose(modules[0].attribute(batch, create_graph=False), ig)  # the training attribution differs
