"""Contrastive occlusion: exact on a linear model (as IG is at any steps), by hand on a tiny Llama, packed = padded,
batched = unbatched, sign and cost invariants."""

from __future__ import annotations

import pytest
import torch

from lmcore.quadrature import QUADRATURES
from steering import EmbeddedTriple, contrastive_ig_embeds, encode_pair, replacement_embedding
from steering.occlusion import contrastive_occlusion_embeds
from tests.linear_lm import LinearLM
from tests.tiny_lm import FAMILIES, rows_through_layer0, tiny_causal_lm, tiny_lm_tokenizer, tiny_pairs

PAIRS = tiny_pairs()


def _triples(model, tok, pairs=PAIRS) -> list[EmbeddedTriple]:
    emb = model.get_input_embeddings()
    out = []
    for p in pairs:
        x, y_pos, y_neg = encode_pair(tok, p)
        out.append(EmbeddedTriple(emb(x).detach(), y_pos, y_neg))
    return out


@pytest.fixture(scope="module")
def linear():
    return LinearLM(), tiny_lm_tokenizer()


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("mask", ["baseline", "attention"])
def test_occlusion_of_a_linear_model_is_its_exact_attribution(linear, packed, mask):
    """F linear in x: F(x) − F(x with x_i zeroed) = x_i · ∇F; masking the key is the same as zeroing it here."""
    model, tok = linear
    got = contrastive_occlusion_embeds(model, _triples(model, tok), mask=mask, packed=packed, internal_batch_size=3)
    for p, a in zip(PAIRS, got):
        x, y_pos, y_neg = encode_pair(tok, p)
        torch.testing.assert_close(a.scores, model.exact_attribution(x, y_pos, y_neg), atol=1e-5, rtol=1e-5)
        assert a.completeness_error is None and a.objective_value is not None


@pytest.mark.parametrize("method", QUADRATURES)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_ig_of_a_linear_model_is_exact_at_any_steps(linear, method, steps):
    model, tok = linear
    for packed in (True, False):
        got = contrastive_ig_embeds(model, _triples(model, tok), n_steps=steps, method=method, packed=packed)
        for p, a in zip(PAIRS, got):
            x, y_pos, y_neg = encode_pair(tok, p)
            torch.testing.assert_close(a.scores, model.exact_attribution(x, y_pos, y_neg), atol=1e-5, rtol=1e-5)
            assert abs(a.completeness_error) < 1e-5


def _contrast(model, x, y_pos, y_neg) -> float:
    """F for one input (n, d), unpacked and unbatched: the definition."""
    from steering.scoring import response_logprob_from_logits

    emb, f = model.get_input_embeddings(), 0.0
    for y, sign in ((y_pos, 1), (y_neg, -1)):
        seq = torch.cat([x, emb(y)])[None]
        ids = torch.cat([torch.zeros(len(x), dtype=torch.long), y])[None]
        resp = torch.zeros_like(ids, dtype=torch.bool)
        resp[:, len(x) :] = True
        f += sign * float(response_logprob_from_logits(model(inputs_embeds=seq).logits, ids, resp))
    return f


@pytest.mark.parametrize("mask", ["baseline", "mean", "pad_id"])
def test_occlusion_by_hand_on_a_tiny_llama(model_tok, mask):
    model, tok = model_tok
    replacement = replacement_embedding(model, tok, mask)
    x_ids, y_pos, y_neg = encode_pair(tok, PAIRS[0])
    x = model.get_input_embeddings()(x_ids).detach()
    got = contrastive_occlusion_embeds(model, [EmbeddedTriple(x, y_pos, y_neg)], mask=mask, replacement=replacement)[0]
    with torch.no_grad():
        f = _contrast(model, x, y_pos, y_neg)
        for i in range(len(x)):
            masked = x.clone()
            masked[i] = 0 if replacement is None else replacement
            assert float(got.scores[i]) == pytest.approx(f - _contrast(model, masked, y_pos, y_neg), abs=2e-5)
    assert got.objective_value == pytest.approx(f, abs=2e-5)


@pytest.mark.parametrize("mask", ["mean", "attention"])
def test_batched_equals_unbatched_and_packed_equals_padded(model_tok, mask):
    model, tok = model_tok
    replacement = replacement_embedding(model, tok, mask)
    triples = _triples(model, tok)
    kw = dict(mask=mask, replacement=replacement)
    ref = [contrastive_occlusion_embeds(model, [t], internal_batch_size=2, packed=False, **kw)[0] for t in triples]
    for packed, side, size in ((True, "left", 3), (False, "left", 5), (False, "right", 64)):
        got = contrastive_occlusion_embeds(model, triples, internal_batch_size=size, padding_side=side, packed=packed,
                                           **kw)  # fmt: skip
        for a, b in zip(got, ref):
            torch.testing.assert_close(a.scores, b.scores, atol=2e-5, rtol=1e-4)
            assert a.objective_value == pytest.approx(b.objective_value, abs=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_prefix_cache_changes_no_score_on_any_family(family):
    """Rows of a chunk share x[:p] unchanged, so its keys / values come from the clean row: the scores of a full
    forward per row, on every supported family (sliding window, GPT-2's absolute positions included)."""
    model, tok = tiny_causal_lm(family), tiny_lm_tokenizer()
    triples = _triples(model, tok)
    positions = [torch.tensor([4, 1, 2, 5]), torch.arange(len(triples[1].input_embeds)), torch.tensor([0, 3])]
    ref = contrastive_occlusion_embeds(model, triples, positions, prefix_cache=False, internal_batch_size=3)
    got = contrastive_occlusion_embeds(model, triples, positions, internal_batch_size=3)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.scores, b.scores, atol=2e-5, rtol=1e-4)
        assert a.objective_value == pytest.approx(b.objective_value, abs=1e-6)


def test_only_the_given_positions_are_scored(model_tok):
    model, tok = model_tok
    triples = _triples(model, tok)
    full = contrastive_occlusion_embeds(model, triples)
    subsets = [torch.tensor([1, 3]), torch.tensor([], dtype=torch.long), torch.tensor([2])]
    part = contrastive_occlusion_embeds(model, triples, positions=subsets)
    for f, p, s in zip(full, part, subsets):
        outside = torch.ones(len(f.scores), dtype=torch.bool)
        outside[s] = False
        torch.testing.assert_close(p.scores[s], f.scores[s], atol=2e-5, rtol=1e-4)
        assert bool((p.scores[outside] == 0).all())


def test_swapping_preferred_and_dispreferred_negates_the_scores(model_tok):
    model, tok = model_tok
    t = _triples(model, tok)[1]
    a = contrastive_occlusion_embeds(model, [t])[0]
    b = contrastive_occlusion_embeds(model, [EmbeddedTriple(t.input_embeds, t.dispreferred_ids, t.preferred_ids)])[0]
    torch.testing.assert_close(b.scores, -a.scores, atol=2e-5, rtol=1e-4)


def test_one_packed_no_grad_row_per_scored_position_plus_the_clean_one(model_tok):
    """Cost: 1 + |positions| packed forwards, no backward (IG: ig_steps forward + backward rows, + 2 for F(x), F(0))."""
    model, tok = model_tok
    t = _triples(model, tok)[0]
    positions = torch.arange(1, len(t.input_embeds) - 1)
    n_rows = rows_through_layer0(model, lambda: contrastive_occlusion_embeds(model, [t], positions=[positions],
                                                                               internal_batch_size=4))  # fmt: skip
    assert n_rows == 1 + len(positions)
    assert rows_through_layer0(model, lambda: contrastive_ig_embeds(model, [t], n_steps=20)) == 20 + 2


def test_bad_arguments_are_named(model_tok):
    model, tok = model_tok
    t = _triples(model, tok)[0]
    with pytest.raises(ValueError, match="at least one example"):
        contrastive_occlusion_embeds(model, [])
    with pytest.raises(ValueError, match=r"positions \[99\] of example 0 are outside its"):
        contrastive_occlusion_embeds(model, [t], positions=[torch.tensor([99])])
    with pytest.raises(ValueError, match="mask 'zero' is not one of"):
        contrastive_occlusion_embeds(model, [t], mask="zero")
    with pytest.raises(ValueError, match="2 position lists for 1 examples"):
        contrastive_occlusion_embeds(model, [t], positions=[torch.tensor([1]), torch.tensor([1])])


def test_occlusion_extraction_on_a_vlm_scores_image_tokens_from_the_image():
    """Occlusion over merged embeddings: image tokens are candidates, scored from the image actually fed."""
    from dataclasses import replace as _replace

    from steering import ContrastivePair, GrainsConfig, extract_deltas
    from steering.pairs import image_token_mask
    from tests.tiny_lm import LLAVA_IMAGE_TOKENS, tiny_llava_image, tiny_vlm

    model, tok = tiny_vlm("llava"), tiny_lm_tokenizer()
    prompt = "<image> " * LLAVA_IMAGE_TOKENS + "q what is the sky a"
    config = GrainsConfig(top_k=2, top_k_image=1, attribution="occlusion", signed_selection=False)
    runs = [extract_deltas(model, tok, [ContrastivePair(prompt, " blue", " green", pixel_values=tiny_llava_image(s))],
                           [2], config) for s in (0, 1)]  # fmt: skip
    image = image_token_mask(model, tok(prompt, return_tensors="pt").input_ids[0])
    s0, s1 = (r.attributions[0].scores for r in runs)
    assert bool((s0[image] != 0).all()) and not torch.allclose(s0[image], s1[image], atol=1e-6)
    assert int(image[runs[0].top_pos[0]].sum()) == 1 and int(image[runs[0].top_neg[0]].sum()) == 1
    padded = extract_deltas(model, tok, [ContrastivePair(prompt, " blue", " green", pixel_values=tiny_llava_image(0))],
                            [2], _replace(config, pack_ig=False))  # fmt: skip
    torch.testing.assert_close(padded.attributions[0].scores, s0, atol=2e-5, rtol=1e-4)
