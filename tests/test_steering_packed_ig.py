"""Packed contrastive IG (x once, then y⁺ and y⁻, block-causal) equals the padded two-row IG: scores, completeness,
per-example deltas, top-k sets and vectors; it falls back to padded rows where packing is not exact."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
import torch

from steering import ContrastivePair, GrainsConfig, contrastive_ig, encode_pair, extract_deltas
from steering.attribution import EmbeddedTriple, packs_exactly
from tests.tiny_lm import FAMILIES, rows_through_layer0, tiny_causal_lm, tiny_pairs

PAIRS = [*tiny_pairs(), ContrastivePair("q is fire cold a", " no it is hot", " yes")]


def _assert_same_ig(model, tok, pairs, **kw) -> None:
    for pair in pairs:
        x, y_pos, y_neg = encode_pair(tok, pair)
        for include_response in (False, True):
            ref = contrastive_ig(model, x, y_pos, y_neg, packed=False, include_response=include_response, **kw)
            got = contrastive_ig(model, x, y_pos, y_neg, internal_batch_size=3, include_response=include_response, **kw)
            torch.testing.assert_close(got.scores, ref.scores, atol=1e-5, rtol=1e-4)
            if include_response:
                torch.testing.assert_close(got.preferred_scores, ref.preferred_scores, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(got.dispreferred_scores, ref.dispreferred_scores, atol=1e-5, rtol=1e-4)
            assert got.objective_value == pytest.approx(ref.objective_value, abs=1e-5)
            assert got.baseline_value == pytest.approx(ref.baseline_value, abs=1e-5)
            assert got.completeness_error == pytest.approx(ref.completeness_error, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_ig_equals_padded_ig_on_every_family(family):
    from tests.tiny_lm import tiny_lm_tokenizer

    _assert_same_ig(tiny_causal_lm(family), tiny_lm_tokenizer(), PAIRS[:2], n_steps=4)


@pytest.mark.parametrize("objective", ["mean", "last_token", "legacy_off_by_one"])
def test_packed_ig_equals_padded_ig_for_every_objective(model_tok, objective):
    _assert_same_ig(*model_tok, PAIRS, n_steps=4, objective=objective)


def test_packed_ig_runs_one_row_per_step_and_the_padded_path_two(model_tok):
    model, tok = model_tok
    x, y_pos, y_neg = encode_pair(tok, PAIRS[0])
    for packed, completeness, rows in ((True, False, 5), (True, True, 5 + 2), (False, False, 10), (False, True, 14)):
        run = partial(contrastive_ig, model, x, y_pos, y_neg, n_steps=5, packed=packed, check_completeness=completeness)
        assert rows_through_layer0(model, run) == rows
    off = contrastive_ig(model, x, y_pos, y_neg, n_steps=5, check_completeness=False)
    assert off.objective_value is None and off.completeness_error is None


@pytest.mark.filterwarnings("ignore:top_k")
@pytest.mark.parametrize("position", ["last_input", "last"])
def test_packed_extraction_gives_todays_deltas_top_k_and_vectors(model_tok, position):
    model, tok = model_tok
    cfg = GrainsConfig(top_k=2, ig_steps=8, position=position, include_response=position == "last")
    ref = extract_deltas(model, tok, PAIRS, None, replace(cfg, pack_ig=False), batch_size=2)
    got = extract_deltas(model, tok, PAIRS, None, cfg, batch_size=3)
    torch.testing.assert_close(got.deltas_pos, ref.deltas_pos, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.deltas_neg, ref.deltas_neg, atol=1e-5, rtol=1e-4)
    assert [p.tolist() for p in got.top_pos] == [p.tolist() for p in ref.top_pos]
    assert [q.tolist() for q in got.top_neg] == [q.tolist() for q in ref.top_neg]
    v_ref, v_got = ref.to_vector("pca", "both"), got.to_vector("pca", "both")
    for layer in ref.layers:
        cos = torch.nn.functional.cosine_similarity(v_got.vectors[layer], v_ref.vectors[layer], dim=0)
        assert 1 - float(cos) < 1e-4


def test_a_sliding_window_shorter_than_the_packed_row_falls_back_to_padded_rows():
    from tests.tiny_lm import tiny_lm_tokenizer

    tok = tiny_lm_tokenizer()
    model = tiny_causal_lm("mistral")
    x, y_pos, y_neg = encode_pair(tok, PAIRS[0])
    emb = model.get_input_embeddings()
    triple = [EmbeddedTriple(emb(x).detach(), y_pos, y_neg)]
    assert packs_exactly(model, triple)
    model.config.sliding_window = len(x) + len(y_pos)  # each sequence fits, the packed row x ⊕ y⁺ ⊕ y⁻ does not
    assert not packs_exactly(model, triple)
    kw = dict(n_steps=4, check_completeness=False)
    assert rows_through_layer0(model, lambda: contrastive_ig(model, x, y_pos, y_neg, **kw)) == 8  # padded: 2 / step
    model.config.sliding_window = None
    packed = contrastive_ig(model, x, y_pos, y_neg, **kw)
    model.config.sliding_window = len(x) + len(y_pos)
    fallback = contrastive_ig(model, x, y_pos, y_neg, **kw)
    torch.testing.assert_close(fallback.scores, packed.scores, atol=1e-5, rtol=1e-4)


def test_an_attention_backend_without_custom_masks_falls_back(model_tok, monkeypatch):
    model, tok = model_tok
    x, y_pos, y_neg = encode_pair(tok, PAIRS[1])
    triple = [EmbeddedTriple(model.get_input_embeddings()(x).detach(), y_pos, y_neg)]
    monkeypatch.setattr(model.config, "_attn_implementation", "flash_attention_2")
    assert not packs_exactly(model, triple)
