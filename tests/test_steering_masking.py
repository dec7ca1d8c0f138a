"""Top-k selection and masking methods."""

from __future__ import annotations

import pytest
import torch

from steering import mask_positions, replacement_embedding, top_k_positions
from steering.masking import random_positions
from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer


def test_top_k_pos_neg_and_candidates():
    scores = torch.tensor([0.5, -2.0, 3.0, -0.1, 1.0])
    assert top_k_positions(scores, 2, "pos").tolist() == [2, 4]
    assert top_k_positions(scores, 2, "neg").tolist() == [1, 3]
    cand = torch.tensor([True, False, False, True, True])
    assert top_k_positions(scores, 2, "pos", cand).tolist() == [4, 0]
    assert top_k_positions(scores, 10, "neg", cand).tolist() == [3, 0, 4]  # fewer candidates than k
    with pytest.raises(ValueError, match="k 0 must be >= 1"):
        top_k_positions(scores, 0)


def test_random_positions_are_seeded_candidates():
    cand = torch.tensor([True, False, True, True, False, True])
    a = random_positions(cand, 2, torch.Generator().manual_seed(3))
    b = random_positions(cand, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and cand[a].all() and len(a) == 2


def test_mask_methods():
    model, tok = tiny_causal_lm("llama"), tiny_lm_tokenizer()
    x = torch.randn(5, 16)
    pos = torch.tensor([1, 3])
    out, attn = mask_positions(x, pos, "baseline")
    assert torch.equal(out[pos], torch.zeros(2, 16)) and torch.equal(out[[0, 2, 4]], x[[0, 2, 4]])
    assert attn.tolist() == [1] * 5
    out, attn = mask_positions(x, pos, "attention")
    assert torch.equal(out, x) and attn.tolist() == [1, 0, 1, 0, 1]
    pad = replacement_embedding(model, tok, "pad_id")
    assert torch.equal(pad, model.get_input_embeddings().weight[tok.pad_token_id])
    out, _ = mask_positions(x, pos, "pad_id", pad)
    assert torch.equal(out[1], pad) and torch.equal(out[3], pad)
    assert replacement_embedding(model, tok, "baseline") is None
    with pytest.raises(ValueError, match="mask 'zero' is not one of"):
        mask_positions(x, pos, "zero")
