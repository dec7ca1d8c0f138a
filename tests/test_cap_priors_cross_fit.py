"""Cross-fitted IG / LIME references (``cross_fit_folds``): each training text is scored on a reference that was not
fine-tuned on it, held-out texts on the mean of all K, and configs without the option keep their keys and scores."""

import pytest
import torch

from cap_lightning.priors import HybridPrior, IGPrior, LIMEPrior, cross_fit, reference
from cap_lightning.priors.hybrid import fuse_priors

TEXTS = ["a good movie", "a bad film", "great fun", "awful and boring", "fine work", "not good at all",
         "a good movie", "loved it", "dull", "so so plot twist"]  # fmt: skip
LABELS = [1, 0, 1, 0, 1, 0, 1, 1, 0, 0]
HELD_OUT = ["an unseen good film", "boring", ""]
CPU = torch.device("cpu")
CLASSES = {"IGPrior": (IGPrior, {"steps": 2}), "LIMEPrior": (LIMEPrior, {"n_samples": 8})}


@pytest.fixture(autouse=True)
def _nothing_in_memory(monkeypatch):
    """Every test starts as a new process would: no reference kept from another test."""
    monkeypatch.setattr(reference, "_LAST_REFERENCE", [])
    monkeypatch.setattr(cross_fit, "_LAST_CROSS_FIT", [])


def _prior(prior_class, model_dir, **kwargs):
    cls, extra = CLASSES[prior_class]
    return cls(str(model_dir), **{"fine_tune_epochs": 1, "reference_cache_dir": None, **extra, **kwargs})


def _record(monkeypatch, cls):
    """Record the texts each reference was fine-tuned on (by the model object) and the texts each one scored."""
    seen: dict[int, list[str]] = {}
    scored: list[tuple[int, list[str]]] = []
    fine_tune, score = reference.fine_tune, cls.reference_scores

    def recording_fine_tune(model, tokenizer, texts, labels, *args, **kwargs):
        seen[id(model)] = list(texts)
        return fine_tune(model, tokenizer, texts, labels, *args, **kwargs)

    def recording_scores(self, model, texts, labels):
        scored.append((id(model), list(texts)))
        return score(self, model, texts, labels)

    monkeypatch.setattr(reference, "fine_tune", recording_fine_tune)
    monkeypatch.setattr(cls, "reference_scores", recording_scores)
    return seen, scored


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
def test_each_training_text_is_scored_on_a_reference_that_never_saw_it(prior_class, tiny_model_dir, monkeypatch):
    prior = _prior(prior_class, tiny_model_dir, cross_fit_folds=3)
    seen, scored = _record(monkeypatch, CLASSES[prior_class][0])
    prior.prepare(TEXTS, LABELS, 2, CPU)
    assert len(seen) == 3  # K fine-tunes from model_path
    for trained_on in seen.values():  # reference i trains on every fold but i: 2/3 of the distinct texts
        assert 0 < len(set(trained_on)) < len(set(TEXTS))
    out = prior(TEXTS + HELD_OUT, LABELS + [1, 0, 1])
    assert [len(p) for p in out] == [len(t.split()) for t in TEXTS + HELD_OUT]
    assert all(((p >= 0) & (p <= 1)).all() for p in out)
    by_model: dict[str, set[int]] = {}
    for model, texts in scored:
        for text in texts:
            by_model.setdefault(text, set()).add(model)
            assert text not in seen[model], f"{text!r} scored on a reference fine-tuned on it"
    for text in set(TEXTS):  # one reference per training text, the one of its fold
        assert len(by_model[text]) == 1
        assert all(text in trained_on for m, trained_on in seen.items() if m not in by_model[text])
    for text in HELD_OUT:  # a text outside the split: every reference
        assert by_model[text] == set(seen)
    assert torch.equal(out[0], out[6])  # a repeated text: the same reference, the same prior


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
def test_a_held_out_text_gets_the_mean_of_the_k_references(prior_class, tiny_model_dir):
    prior = _prior(prior_class, tiny_model_dir, cross_fit_folds=2)
    prior.prepare(TEXTS, LABELS, 2, CPU)
    refs = prior.references
    per_reference = [prior.reference_scores(model, HELD_OUT, [1, 0, 1]) for model in refs.models]
    for a, b in zip(prior(HELD_OUT, [1, 0, 1]), fuse_priors(per_reference, agg="mean"), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a training text in a batch of others gets what its fold's reference gives it alone
    alone = prior.reference_scores(refs.models[refs.fold_of[TEXTS[3]]], TEXTS[3:4], LABELS[3:4])[0]
    torch.testing.assert_close(prior(TEXTS, LABELS)[3], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
def test_a_cached_cross_fit_equals_a_recompute(prior_class, tiny_model_dir, tmp_path, monkeypatch):
    """Each fold's reference is saved by the rows it trains on: a rerun loads all K instead of fine-tuning, and
    gives the scores a run without the reference cache computes."""
    refs = tmp_path / "refs"
    first = _prior(prior_class, tiny_model_dir, cross_fit_folds=3, reference_cache_dir=str(refs))
    first.prepare(TEXTS, LABELS, 2, CPU)
    expected = first(TEXTS + HELD_OUT, LABELS + [1, 0, 1])
    assert len(list(refs.glob("*.safetensors"))) == 3
    monkeypatch.setattr(reference, "_LAST_REFERENCE", [])
    monkeypatch.setattr(cross_fit, "_LAST_CROSS_FIT", [])
    uncached = _prior(prior_class, tiny_model_dir, cross_fit_folds=3)
    uncached.prepare(TEXTS, LABELS, 2, CPU)
    recomputed = uncached(TEXTS + HELD_OUT, LABELS + [1, 0, 1])
    monkeypatch.setattr(reference, "_LAST_REFERENCE", [])
    monkeypatch.setattr(cross_fit, "_LAST_CROSS_FIT", [])

    def no_fine_tune(*args, **kwargs):
        raise AssertionError("a cached fold reference was fine-tuned again")

    monkeypatch.setattr(reference, "fine_tune", no_fine_tune)
    again = _prior(prior_class, tiny_model_dir, cross_fit_folds=3, reference_cache_dir=str(refs))
    again.prepare(TEXTS, LABELS, 2, CPU)
    for a, b, c in zip(again(TEXTS + HELD_OUT, LABELS + [1, 0, 1]), expected, recomputed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert first.cache_key() == again.cache_key() == uncached.cache_key()  # the reference cache is a runtime knob


def test_ig_and_lime_of_one_hybrid_share_the_fold_references(tiny_model_dir, monkeypatch):
    seen, _ = _record(monkeypatch, IGPrior)
    common = dict(fine_tune_epochs=1, reference_cache_dir=None, cross_fit_folds=2, max_length=32)
    hybrid = HybridPrior([IGPrior(str(tiny_model_dir), steps=2, **common),
                          LIMEPrior(str(tiny_model_dir), n_samples=8, **common)], example_cache_dir=None)  # fmt: skip
    hybrid.prepare(TEXTS, LABELS, 2, CPU)
    assert len(seen) == 2  # K fine-tunes for both sources
    assert hybrid.sources[0].references is hybrid.sources[1].references
    assert len(hybrid(TEXTS[:3], LABELS[:3])) == 3


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
def test_without_the_option_nothing_changes(prior_class, tiny_model_dir):
    """cross_fit_folds=None is today's prior: one reference, the same scores, the same config and cache key."""
    omitted, explicit = _prior(prior_class, tiny_model_dir), _prior(prior_class, tiny_model_dir, cross_fit_folds=None)
    assert "cross_fit_folds" not in omitted.config() and omitted.cache_key() == explicit.cache_key()
    omitted.prepare(TEXTS, LABELS, 2, CPU)
    explicit.prepare(TEXTS, LABELS, 2, CPU)
    assert omitted.references is None and omitted.model is not None
    for a, b in zip(omitted(TEXTS, LABELS), explicit(TEXTS, LABELS), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    crossed = _prior(prior_class, tiny_model_dir, cross_fit_folds=2)
    assert crossed.config()["cross_fit_folds"] == 2
    three = _prior(prior_class, tiny_model_dir, cross_fit_folds=3)
    assert len({omitted.cache_key(), crossed.cache_key(), three.cache_key()}) == 3


def test_cache_keys_of_configs_without_the_option_are_those_of_earlier_versions():
    """Keys computed by the package before ``cross_fit_folds`` existed (a hub id: no weight digest)."""
    assert IGPrior("org/reference").cache_key() == "3eac6639eda66b43eae64d45b3212df8f15cc643cfb15ab0e2fc909b83316e85"
    assert (
        IGPrior("org/reference", fine_tune_epochs=2).cache_key()
        == "f837b8709f4a10da33b07babb714106cfd2dd5ebe152a4e6369ff19ea59de52e"
    )
    assert LIMEPrior("org/reference").cache_key() == "7bf0d9066025d9941c9b80b3e655a13ba906f3f11571802f779415b3ab1e7e95"
    assert (
        LIMEPrior("org/reference", fine_tune_epochs=2, n_samples=8).cache_key()
        == "eb2c5500dfd9f1f68fe4f82ee5f69567d59823bd9787c7dd6349f37666ea34f5"
    )


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cross_fit_folds": 1}, ValueError, r"cross_fit_folds=1 leaves the reference no text .*use null"),
        ({"cross_fit_folds": 0}, ValueError, r"cross_fit_folds must be >= 2 .*got 0"),
        ({"cross_fit_folds": True}, TypeError, r"cross_fit_folds must be an integer >= 2 or null, got True"),
        ({"cross_fit_folds": 3, "fine_tune_epochs": 0}, ValueError,
         r"cross_fit_folds=3 needs fine_tune_epochs >= 1 .*got fine_tune_epochs=0"),
    ],
)  # fmt: skip
def test_bad_options_fail_at_construction(prior_class, kwargs, error, match):
    cls, extra = CLASSES[prior_class]
    with pytest.raises(error, match=match):
        cls(**{"model_path": "org/reference", "fine_tune_epochs": 1, **extra, **kwargs})


@pytest.mark.parametrize("prior_class", sorted(CLASSES))
def test_more_folds_than_texts_fails_before_any_model_loads(prior_class, tiny_model_dir, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(reference, "load_reference", no_load)
    prior = _prior(prior_class, tiny_model_dir, cross_fit_folds=9)
    with pytest.raises(ValueError, match="cross_fit_folds=9 needs at least 9 distinct training texts .*got 8"):
        prior.prepare(TEXTS[:9], LABELS[:9], 2, CPU)  # 9 rows, 8 distinct texts


def test_cross_fitted_priors_through_the_training_and_held_out_callbacks(tiny_model_dir, tmp_path, monkeypatch):
    """``PriorCacheCallback`` prepares on the training texts and scores them in chunks: each on the reference of its
    fold; ``HeldOutPriorCallback`` scores test texts on the mean of the K references."""
    from cap_lightning.module import CapModule
    from cap_lightning.priors import PriorCacheCallback
    from cap_lightning.priors.held_out import HeldOutPriorCallback
    from tests.helpers import quiet_trainer, tiny_datamodule

    seen, scored = _record(monkeypatch, IGPrior)
    prepared: dict[int, list[str]] = {}  # the texts each reference was prepared on (fine-tuned, or read from disk)
    prepare = reference.prepare_reference

    def recording_prepare(model_path, num_labels, texts, *args):
        model, tokenizer = prepare(model_path, num_labels, texts, *args)
        prepared[id(model)] = list(texts)
        return model, tokenizer

    monkeypatch.setattr(reference, "prepare_reference", recording_prepare)
    prior = IGPrior(str(tiny_model_dir), steps=2, fine_tune_epochs=1, reference_cache_dir=str(tmp_path / "refs"),
                    cross_fit_folds=2)  # fmt: skip
    dm = tiny_datamodule(tiny_model_dir)
    module = CapModule(str(tiny_model_dir), prior_weight=0.5, ig_steps=1)
    callbacks = [PriorCacheCallback(prior, cache_dir=str(tmp_path / "priors"), chunk_size=4),
                 HeldOutPriorCallback(prior, rows=3, cache_dir=str(tmp_path / "priors"))]  # fmt: skip
    trainer = quiet_trainer(max_steps=1, callbacks=callbacks)
    trainer.fit(module, dm)
    train_texts = set(dm.prior_inputs()[0])
    assert len(seen) == 2 and all(set(t) < train_texts for t in seen.values())
    assert seen == prepared
    for model, texts in scored:
        assert set(texts) <= train_texts and not set(texts) & set(seen[model])
    scored.clear()
    trainer.test(module, dm)
    held_out = {t for _, texts in scored for t in texts}
    assert held_out and held_out.isdisjoint(train_texts)
    assert len(seen) == 2  # the test stage read the K fold references from the cache: no new fine-tune
    models = {m for m, _ in scored}
    assert len(models) == 2 and sorted(prepared[m] for m in models) == sorted(seen.values())  # all K, mean
