import torch

from cap_lightning.tokens import (
    batch_word_index,
    broadcast_word_values,
    token_word_index,
    tokens_to_words,
    word_spans,
    word_sums,
    words_to_tokens,
)
from lmcore.models import load_tokenizer
from tests.tiny import tiny_tokenizer


def test_token_word_index_assigns_subwords_to_their_word():
    text = "unbelievably  boring film!"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == ["unbelievably", "boring", "film!"]
    offsets = [(0, 0), (0, 2), (2, 12), (14, 20), (21, 25), (25, 26), (0, 0)]
    assert token_word_index(offsets, spans) == [-1, 0, 0, 1, 2, 2, -1]


def test_wordpiece_alignment_on_minilm_tokenizer():
    tok = load_tokenizer("minilm")
    texts = ["I can't find my card!!", "unbelievably boring film"]
    enc, wi = batch_word_index(tok, texts, max_length=32)
    for b, text in enumerate(texts):
        n_words = len(text.split())
        ids = wi[b][wi[b] >= 0]
        assert set(ids.tolist()) == set(range(n_words))  # every word has at least one subword
        assert torch.all(ids[1:] >= ids[:-1])  # monotone
        special = torch.tensor(
            tok.get_special_tokens_mask(enc["input_ids"][b].tolist(), already_has_special_tokens=True)
        )
        assert torch.all(wi[b][special.bool()] == -1)


def test_truncation_and_padding_get_minus_one():
    tok = tiny_tokenizer()
    enc, wi = batch_word_index(tok, ["good fun movie and great film", "bad"], max_length=4)
    assert wi.shape == enc["input_ids"].shape
    assert wi[0].tolist() == [-1, 0, 1, -1]  # [CLS] good fun [SEP]
    assert wi[1].tolist() == [-1, 0, -1, -1]


def test_words_to_tokens_then_back_sums_per_subword():
    tok = load_tokenizer("minilm")
    texts = ["unbelievably boring film", "good"]
    _, wi = batch_word_index(tok, texts, max_length=32)
    values = [torch.tensor([0.5, 1.0, 0.25]), torch.tensor([0.75])]
    per_token = words_to_tokens(values, wi)
    back = tokens_to_words(per_token, wi, [3, 1])
    counts = tokens_to_words((wi >= 0).float(), wi, [3, 1])
    for v, b, c in zip(values, back, counts):
        torch.testing.assert_close(b, v * c)


def test_byte_level_bpe_alignment_handles_leading_spaces():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the movie was great fun", "a boring film", "unbelievably good"] * 20, vocab_size=300)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>")
    tok.add_special_tokens({"pad_token": "<pad>"})
    texts = ["unbelievably  boring film!", "the movie"]
    enc, wi = batch_word_index(tok, texts, max_length=32)
    for b, text in enumerate(texts):
        ids = wi[b][wi[b] >= 0].tolist()
        assert sorted(set(ids)) == list(range(len(text.split())))
        assert ids == sorted(ids)
    assert torch.all(wi[enc["attention_mask"] == 0] == -1)


def test_batched_word_sums_equal_the_per_row_sums_and_ignore_non_content():
    word_index = torch.tensor([[-1, 0, 0, 1, 2, -1, -1], [-1, 0, 1, 1, -1, -1, -1]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]])
    content = (word_index >= 0) & (attention > 0)
    values = torch.randn(2, 7)
    values[~content] = float("nan")  # what sits off content never counts
    sums, present = word_sums(values, word_index, content)
    expected = tokens_to_words(torch.where(content, values, 0.0), word_index, [3, 3])
    torch.testing.assert_close(sums[0], expected[0])
    torch.testing.assert_close(sums[1, :2], expected[1][:2])
    assert present.tolist() == [[True, True, True], [True, True, False]]  # row 1 has two words


def test_broadcast_word_values_undo_words_to_tokens():
    word_index = torch.tensor([[-1, 0, 0, 1, 2, -1], [-1, 0, 1, -1, -1, -1]])
    content = word_index >= 0
    words = [torch.tensor([0.2, 0.9, 0.4]), torch.tensor([1.0, 0.0])]
    back = broadcast_word_values(words_to_tokens(words, word_index), word_index, content)
    torch.testing.assert_close(back[0], words[0])
    torch.testing.assert_close(back[1, :2], words[1])
    assert back[1, 2] == 0.0  # a word row 1 does not have
