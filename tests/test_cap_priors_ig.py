import lightning as L
import pytest
import torch

from cap_lightning.module import CapModule
from cap_lightning.priors.base import normalise_word_scores
from cap_lightning.priors.ig import IGPrior
from tests.helpers import tiny_datamodule

TEXTS = ["this movie is great fun", "bad film", "i hate this boring xyzzy film"]
LABELS = [1, 0, 0]


def test_normalise_word_scores():
    torch.testing.assert_close(normalise_word_scores(torch.tensor([-1.0, 2.0, 1.0])), torch.tensor([0.0, 1.0, 0.5]))
    assert torch.equal(normalise_word_scores(torch.tensor([-1.0, -2.0])), torch.zeros(2))


def test_ig_prior_gives_one_unit_interval_score_per_word(tiny_model_dir):
    prior = IGPrior(str(tiny_model_dir), steps=8, batch_size=2)
    prior.prepare(TEXTS, LABELS, 2, torch.device("cpu"))
    out = prior(TEXTS, LABELS)
    assert [p.shape[0] for p in out] == [len(t.split()) for t in TEXTS]
    for p in out:
        assert p.min() >= 0 and p.max() <= 1 and torch.isfinite(p).all()
    assert max(prior.convergence_deltas) < 1e-3  # captum's completeness check
    batched_alone = IGPrior(str(tiny_model_dir), steps=8, batch_size=1)
    batched_alone.prepare(TEXTS, LABELS, 2, torch.device("cpu"))
    for a, b in zip(out, batched_alone(TEXTS, LABELS)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)  # padding in a batch does not change scores


def test_ig_prior_from_a_capmodule_checkpoint(tiny_model_dir, tmp_path):
    module = CapModule(str(tiny_model_dir), prior_weight=0.0)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, tiny_datamodule(tiny_model_dir))
    ckpt = tmp_path / "ref.ckpt"
    trainer.save_checkpoint(ckpt)
    prior = IGPrior(str(ckpt), steps=4)
    prior.prepare(TEXTS, LABELS, 2, torch.device("cpu"))
    assert len(prior(TEXTS, LABELS)) == 3
    key = prior.cache_key()
    before = module.model.classifier.weight.detach().clone()
    trainer2 = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path / "again", num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer2.fit(module, tiny_datamodule(tiny_model_dir))  # retrain: new weights, new key
    assert not torch.equal(before, module.model.classifier.weight)
    trainer2.save_checkpoint(ckpt)
    assert IGPrior(str(ckpt), steps=4).cache_key() != key
    with pytest.raises(ValueError, match="has 2 labels, the data has 3"):
        IGPrior(str(ckpt)).prepare(TEXTS, LABELS, 3, torch.device("cpu"))


def test_ig_prior_refuses_an_untrained_head_unless_fine_tuned(tmp_path):
    from transformers import BertConfig, BertModel

    from tests.tiny import tiny_tokenizer

    folder = tmp_path / "encoder-only"
    BertModel(BertConfig(vocab_size=80, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)  # fmt: skip
    tiny_tokenizer().save_pretrained(folder)
    with pytest.raises(ValueError, match="without a trained classification head; set fine_tune_epochs > 0"):
        IGPrior(str(folder)).prepare(TEXTS, LABELS, 2, torch.device("cpu"))
    tuned = IGPrior(str(folder), steps=4, fine_tune_epochs=1, reference_cache_dir=None)
    tuned.prepare(TEXTS, LABELS, 2, torch.device("cpu"))
    assert len(tuned(TEXTS, LABELS)) == 3


def test_ig_prior_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="baseline 'zero' is not one of"):
        IGPrior(baseline="zero")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        IGPrior(steps=0)
    with pytest.raises(FileNotFoundError, match="train the baseline first"):
        IGPrior(str(tmp_path / "missing.ckpt")).prepare(TEXTS, LABELS, 2, torch.device("cpu"))


@pytest.mark.parametrize("prior_class", ["IGPrior", "LIMEPrior"])
def test_a_resumed_extraction_reuses_the_fine_tuned_reference(prior_class, tiny_model_dir, tmp_path, monkeypatch):
    """The fine-tuned reference is saved by its key; a second prepare (a resume, a new process) loads it instead of
    fine-tuning again, and gives identical priors."""
    from cap_lightning.priors import LIMEPrior, reference

    cls = {"IGPrior": IGPrior, "LIMEPrior": LIMEPrior}[prior_class]
    extra = {"steps": 2} if cls is IGPrior else {"n_samples": 8}
    kwargs = dict(model_path=str(tiny_model_dir), fine_tune_epochs=1, reference_cache_dir=str(tmp_path / "refs"))
    texts, labels = ["a good movie", "a bad film", "great fun", "awful and boring"], [1, 0, 1, 0]
    first = cls(**kwargs, **extra)
    first.prepare(texts, labels, 2, torch.device("cpu"))
    expected = first(texts, labels)
    assert len(list((tmp_path / "refs").glob("*.safetensors"))) == 1
    reference._LAST_REFERENCE.clear()  # a new process: nothing in memory

    def no_fine_tune(*args, **kw):
        raise AssertionError("the reference was fine-tuned again")

    monkeypatch.setattr(reference, "fine_tune", no_fine_tune)
    again = cls(**kwargs, **extra)
    again.prepare(texts, labels, 2, torch.device("cpu"))
    for a, b in zip(again(texts, labels), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert cls(**kwargs, **extra).cache_key() == cls(**{**kwargs, "reference_cache_dir": None}, **extra).cache_key()
