"""Prior controls (docs/cap.md §2): uniform and shuffled priors through the same code path as the real prior."""

import lightning as L
import pytest
import torch

from cap_lightning.module import CapModule
from cap_lightning.priors.callback import PriorCacheCallback
from cap_lightning.priors.controls import control_priors, shuffled_prior, uniform_prior
from tests.helpers import CountingPrior, tiny_datamodule

PRIORS = [
    torch.tensor([0.1, 1.0, 0.4, 0.0, 0.7]),
    torch.tensor([0.0, 0.0, 0.0]),  # an all-zero prior: left out of the loss, and must stay so
    torch.tensor([1.0, 0.5]),
    torch.tensor([0.3, 1.0, 0.6, 0.2, 0.9, 0.0, 0.0]),  # the last two words are past max_length
    torch.tensor([0.5, 0.5, 0.5]),  # all equal: nothing to move
]
VISIBLE = [5, 3, 2, 5, 3]


def test_shuffled_is_a_deterministic_permutation_within_each_text_that_moves_distinct_scores():
    out = control_priors(PRIORS, "shuffled", seed=0, n_visible=VISIBLE)
    again = control_priors(PRIORS, "shuffled", seed=0, n_visible=VISIBLE)
    for p, q, r, n in zip(PRIORS, out, again, VISIBLE):
        assert torch.equal(q, r)  # the same permutation every call (and so every epoch)
        assert torch.equal(q[:n].sort().values, p[:n].sort().values)  # the text's multiset of scores
        assert torch.equal(q[n:], p[n:])  # words the student does not read keep their 0
        if p[:n].unique().numel() > 1:
            assert not torch.equal(q, p)  # a control that moved nothing would be no control
    assert torch.equal(out[1], PRIORS[1]) and torch.equal(out[4], PRIORS[4])
    # keyed on (seed, example index): another seed or another position gives other permutations
    long = torch.linspace(0.1, 1.0, 12)
    draws = {tuple(shuffled_prior(long, 12, index=i, seed=s).tolist()) for i in range(3) for s in range(3)}
    assert len(draws) == 9


def test_uniform_is_constant_over_the_words_the_student_reads():
    out = control_priors(PRIORS, "uniform", n_visible=VISIBLE)
    for p, q, n in zip(PRIORS, out, VISIBLE):
        if (p[:n] > 0).any():
            assert torch.equal(q[:n], torch.ones(n)) and torch.equal(q[n:], torch.zeros(len(p) - n))
        else:
            assert torch.equal(q, torch.zeros(len(p)))  # a zero prior stays zero, so its row stays left out
    assert torch.equal(uniform_prior(torch.tensor([0.0, 0.2]), 2), torch.ones(2))


def test_none_keeps_the_priors_and_bad_input_is_named():
    assert all(p is q for p, q in zip(PRIORS, control_priors(PRIORS, "none")))
    with pytest.raises(ValueError, match="control 'random' is not one of"):
        control_priors(PRIORS, "random")
    with pytest.raises(ValueError, match="control 'random' is not one of"):
        PriorCacheCallback(CountingPrior(), control="random")
    with pytest.raises(ValueError, match="2 visible-word counts for 5 priors"):
        control_priors(PRIORS, "uniform", n_visible=[1, 2])


def _attached(tiny_model_dir, tmp_path, control):
    dm = tiny_datamodule(tiny_model_dir)
    callback = PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path), control=control, control_seed=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, max_steps=1, limit_val_batches=0, callbacks=[callback])  # fmt: skip
    trainer.fit(CapModule(str(tiny_model_dir), prior_weight=0.5, ig_steps=1), dm)
    return dm, callback


def test_the_callback_attaches_the_control_of_the_cached_prior(tiny_model_dir, tmp_path):
    real, cb_real = _attached(tiny_model_dir, tmp_path, "none")
    shuffled, cb_shuffled = _attached(tiny_model_dir, tmp_path, "shuffled")
    assert cb_shuffled.last["cache_hit"] and cb_real.last["path"] == cb_shuffled.last["path"]  # one cache entry
    moved = 0
    for p, q in zip(real._train_priors, shuffled._train_priors):
        assert torch.equal(p.sort().values, q.sort().values)
        moved += not torch.equal(p, q)
    assert moved > 0
    batch = next(iter(shuffled.train_dataloader()))  # the control is what the batches carry
    index = int(batch["index"][0])
    first = batch["prior"][0][batch["word_index"][0] >= 0]
    assert torch.equal(first, shuffled._train_priors[index][: len(first)])
