"""Contrastive IG: captum oracle, antisymmetry in (y⁺, y⁻), completeness, batching invariance."""

from __future__ import annotations

import pytest
import torch

from lmcore.quadrature import quadrature_points
from steering import EmbeddedTriple, contrastive_ig, contrastive_ig_embeds, encode_pair
from steering.scoring import response_logprob_from_logits
from tests.tiny_lm import tiny_pairs

PAIRS = tiny_pairs()


def _contrast(model, x, y_pos, y_neg):
    """F(x) for a batch of input embeddings x (S, n, d): log p(y⁺|x) − log p(y⁻|x), (S,)."""
    emb = model.get_input_embeddings()
    out = 0
    for y, sign in ((y_pos, 1), (y_neg, -1)):
        ye = emb(y)[None].expand(x.shape[0], -1, -1)
        seq = torch.cat([x, ye], dim=1)
        ids = torch.cat([torch.zeros(x.shape[1], dtype=torch.long), y])[None].expand(x.shape[0], -1)
        resp = torch.zeros_like(ids, dtype=torch.bool)
        resp[:, x.shape[1] :] = True
        out = out + sign * response_logprob_from_logits(model(inputs_embeds=seq).logits, ids, resp)
    return out


def test_agrees_with_captum_integrated_gradients(model_tok):
    from captum.attr import IntegratedGradients

    model, tok = model_tok
    x_ids, y_pos, y_neg = encode_pair(tok, PAIRS[0])
    x = model.get_input_embeddings()(x_ids).detach()[None]  # (1, n, d)
    ig = IntegratedGradients(lambda e: _contrast(model, e, y_pos, y_neg))
    ref = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=8, method="gausslegendre").sum(-1)[0]
    ours = contrastive_ig(model, x_ids, y_pos, y_neg, n_steps=8, internal_batch_size=5)
    torch.testing.assert_close(ours.scores, ref.float(), atol=1e-5, rtol=1e-4)


def test_swapping_preferred_and_dispreferred_negates_scores(model_tok):
    model, tok = model_tok
    x, y_pos, y_neg = encode_pair(tok, PAIRS[1])
    a = contrastive_ig(model, x, y_pos, y_neg, n_steps=6)
    b = contrastive_ig(model, x, y_neg, y_pos, n_steps=6)
    torch.testing.assert_close(b.scores, -a.scores, atol=1e-6, rtol=1e-5)
    assert b.objective_value == pytest.approx(-a.objective_value, abs=1e-5)


def test_completeness_error_shrinks_with_steps(model_tok):
    model, tok = model_tok
    x, y_pos, y_neg = encode_pair(tok, PAIRS[0])
    coarse = contrastive_ig(model, x, y_pos, y_neg, n_steps=4)
    fine = contrastive_ig(model, x, y_pos, y_neg, n_steps=64, internal_batch_size=128)
    gap = abs(fine.objective_value - fine.baseline_value)
    assert abs(fine.completeness_error) < 0.25 * abs(coarse.completeness_error)
    assert abs(fine.completeness_error) < 0.3 * gap + 1e-3


def test_include_response_scores_response_tokens_and_keeps_completeness(model_tok):
    model, tok = model_tok
    x, y_pos, y_neg = encode_pair(tok, PAIRS[2])
    coarse = contrastive_ig(model, x, y_pos, y_neg, n_steps=4, include_response=True)
    a = contrastive_ig(model, x, y_pos, y_neg, n_steps=64, include_response=True, internal_batch_size=128)
    assert a.preferred_scores.shape == y_pos.shape and a.dispreferred_scores.shape == y_neg.shape
    # a response's last token is predicted from the position before it: its own embedding cannot change F
    assert a.preferred_scores[-1] == 0 and a.dispreferred_scores[-1] == 0
    assert abs(a.completeness_error) < 0.5 * abs(coarse.completeness_error)


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_unbatched(model_tok, side):
    model, tok = model_tok
    emb = model.get_input_embeddings()
    triples = []
    for p in PAIRS:
        x, y_pos, y_neg = encode_pair(tok, p)
        triples.append(EmbeddedTriple(emb(x).detach(), y_pos, y_neg))
    kw = dict(n_steps=4, padding_side=side, packed=False)  # the padded path (packed rows are per example)
    batched = contrastive_ig_embeds(model, triples, internal_batch_size=7, **kw)
    for t, b in zip(triples, batched):
        single = contrastive_ig_embeds(model, [t], internal_batch_size=100, **kw)[0]
        torch.testing.assert_close(b.scores, single.scores, atol=1e-5, rtol=1e-4)
        assert b.objective_value == pytest.approx(single.objective_value, abs=1e-5)


def test_quadrature_and_argument_errors(model_tok):
    alphas, weights = (t.tolist() for t in quadrature_points(5, "gausslegendre"))
    assert 0 < min(alphas) < max(alphas) < 1 and sum(weights) == pytest.approx(1.0)
    assert quadrature_points(5, "riemann_trapezoid")[0][-1] == 1.0
    with pytest.raises(ValueError, match="quadrature 'simpson' is not one of"):
        quadrature_points(5, "simpson")
    model, tok = model_tok
    with pytest.raises(ValueError, match="at least one example"):
        contrastive_ig_embeds(model, [])
