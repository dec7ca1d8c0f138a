"""Word- vs subword-level alignment (docs/cap.md §2): word level sums the student's subwords per word."""

import pytest
import torch

from cap_lightning.granularity import word_level
from cap_lightning.losses import ALIGNMENT_LOSSES, alignment_loss
from cap_lightning.tokens import batch_word_index, content_mask, words_to_tokens
from tests.tiny import tiny_tokenizer

TEXTS = ["the movie was good", "i lost my card and cash"]


def _one_subword_per_word_batch():
    enc, word_index = batch_word_index(tiny_tokenizer(), TEXTS, max_length=16)
    priors = [torch.tensor([0.2, 1.0, 0.0, 0.7]), torch.tensor([0.0, 1.0, 0.3, 0.9, 0.1, 0.5])]
    batch = {**enc, "word_index": word_index, "prior": words_to_tokens(priors, word_index)}
    return batch


@pytest.mark.parametrize("kind", ALIGNMENT_LOSSES)
def test_word_level_equals_subword_level_when_every_word_is_one_subword(kind):
    batch = _one_subword_per_word_batch()
    mask = content_mask(batch)
    for row, keep in zip(batch["word_index"], mask):  # the tiny tokenizer: one token per word
        assert (row[keep].bincount() == 1).all()
    a = torch.randn(batch["prior"].shape)
    subword = alignment_loss(kind, a, batch["prior"], mask)
    word = alignment_loss(kind, *word_level(a, batch["prior"], batch["word_index"], mask))
    assert subword > 0
    # the same numbers in the same order; only the padded widths differ, so sums may differ in the last float32 bit
    torch.testing.assert_close(word, subword, rtol=2e-7, atol=0)


# row 0: [CLS] w0 w0 w0 w1 w2 [SEP] [PAD]: word 0 has three subwords
WORD_INDEX = torch.tensor([[-1, 0, 0, 0, 1, 2, -1, -1], [-1, 0, 1, 2, 3, -1, -1, -1]])
WORD_PRIOR = [torch.tensor([1.0, 0.2, 0.6]), torch.tensor([0.3, 1.0, 0.0, 0.5])]


def test_word_level_sums_subwords_and_reads_one_prior_per_word():
    p = words_to_tokens(WORD_PRIOR, WORD_INDEX)
    mask = WORD_INDEX >= 0
    a = torch.randn(WORD_INDEX.shape, requires_grad=True)
    a_w, p_w, mask_w = word_level(a, p, WORD_INDEX, mask)
    assert a_w.shape == p_w.shape == mask_w.shape == (2, 4)
    torch.testing.assert_close(a_w[0, :3], torch.stack([a[0, 1:4].sum(), a[0, 4], a[0, 5]]))
    torch.testing.assert_close(p_w[0, :3], WORD_PRIOR[0])
    torch.testing.assert_close(p_w[1], WORD_PRIOR[1])
    assert mask_w.tolist() == [[True, True, True, False], [True, True, True, True]]
    a_w.sum().backward()  # the graph reaches every content subword, once per subword
    assert a.grad.tolist() == mask.float().tolist()


@pytest.mark.parametrize("kind", ALIGNMENT_LOSSES)
def test_word_level_differs_from_subword_level_when_words_split(kind):
    p = words_to_tokens(WORD_PRIOR, WORD_INDEX)
    mask = WORD_INDEX >= 0
    a = torch.tensor([[0.0, 0.5, -0.2, 0.4, 0.1, 0.9, 0.0, 0.0], [0.0, 0.1, 0.8, -0.3, 0.2, 0.0, 0.0, 0.0]])
    word = alignment_loss(kind, *word_level(a, p, WORD_INDEX, mask))
    subword = alignment_loss(kind, a, p, mask)
    assert not torch.isclose(word, subword)
    # word level is subword level on the text with the split word merged into one token
    merged_a = torch.tensor([[0.0, 0.7, 0.1, 0.9, 0.0], [0.0, 0.1, 0.8, -0.3, 0.2]])
    merged_index = torch.tensor([[-1, 0, 1, 2, -1], [-1, 0, 1, 2, 3]])
    merged = alignment_loss(kind, merged_a, words_to_tokens(WORD_PRIOR, merged_index), merged_index >= 0)
    torch.testing.assert_close(word, merged)


def test_off_mask_tokens_add_nothing():
    p = words_to_tokens(WORD_PRIOR, WORD_INDEX)
    mask = WORD_INDEX >= 0
    mask[0, 2] = False  # one subword of word 0 is off the mask
    a = torch.randn(WORD_INDEX.shape)
    a_w, _, mask_w = word_level(a, p, WORD_INDEX, mask)
    torch.testing.assert_close(a_w[0, 0], a[0, 1] + a[0, 3])
    assert mask_w[0, 0]
    with pytest.raises(ValueError, match="one shape"):
        word_level(a, p[:, :3], WORD_INDEX, mask)


def test_training_words_are_the_evaluation_words():
    from cap_lightning.tokens import broadcast_word_values, word_sums

    p = words_to_tokens(WORD_PRIOR, WORD_INDEX)
    mask = WORD_INDEX >= 0
    a = torch.randn(WORD_INDEX.shape)
    a_w, p_w, mask_w = word_level(a, p, WORD_INDEX, mask)
    sums, present = word_sums(a, WORD_INDEX, mask)  # the detached word level of faithfulness and agreement
    torch.testing.assert_close(a_w, sums)
    assert torch.equal(mask_w, present)
    torch.testing.assert_close(p_w, broadcast_word_values(p, WORD_INDEX, mask))
