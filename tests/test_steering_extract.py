"""End-to-end extraction: batching/padding invariance, IG reuse for P and Q, controls, options, metadata."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from steering import ContrastivePair, GrainsConfig, encode_pair, extract_deltas, fit_steering_vector, steer
from steering.scoring import score_responses
from tests.tiny_lm import last_token_delta, tiny_pairs

PAIRS = [*tiny_pairs(), ContrastivePair("q is fire cold a", " no it is hot", " yes")]
CFG = GrainsConfig(top_k=2, ig_steps=4, internal_batch_size=64)


def test_batched_left_right_and_unbatched_give_the_same_vectors(model_tok):
    model, tok = model_tok
    ref = extract_deltas(model, tok, PAIRS, [1, 2], CFG, batch_size=1)
    for side, bs in (("left", 4), ("right", 4), ("left", 3)):
        got = extract_deltas(model, tok, PAIRS, [1, 2], replace(CFG, padding_side=side, internal_batch_size=5), bs)
        torch.testing.assert_close(got.deltas_pos, ref.deltas_pos, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.deltas_neg, ref.deltas_neg, atol=1e-5, rtol=1e-4)
        assert all(torch.equal(a, b) for a, b in zip(got.top_pos, ref.top_pos))
    v_ref = ref.to_vector("pca", "both")
    v_got = got.to_vector("pca", "both")
    for layer in (1, 2):
        torch.testing.assert_close(v_got.vectors[layer], v_ref.vectors[layer], atol=1e-4, rtol=1e-3)


def test_p_and_q_come_from_one_ig_and_deltas_match_masked_forwards(model_tok):
    model, tok = model_tok
    ex = extract_deltas(model, tok, PAIRS[:1], [2], CFG)
    a = ex.attributions[0]
    inner = torch.arange(len(a.scores))[1:-1]  # position 0 (sink) and the read position are never candidates
    pos, neg = inner[a.scores[1:-1] > 0], inner[a.scores[1:-1] < 0]  # sign-restricted: P, Q disjoint
    assert torch.equal(ex.top_pos[0], pos[torch.topk(a.scores[pos], min(2, len(pos))).indices])
    assert torch.equal(ex.top_neg[0], neg[torch.topk(-a.scores[neg], min(2, len(neg))).indices])
    assert len(ex.top_pos[0]) > 0 and not set(ex.top_pos[0].tolist()) & set(ex.top_neg[0].tolist())
    # δ⁺ by hand: h(x) − h(x with P's embeddings zeroed), last input token, layer 2 output
    from steering import encode_pair

    x = encode_pair(tok, PAIRS[0])[0]
    e = model.get_input_embeddings()(x)[None].detach()
    masked = e.clone()
    masked[0, ex.top_pos[0]] = 0
    torch.testing.assert_close(ex.deltas_pos[0, 0], last_token_delta(model, e, masked, 2), atol=1e-5, rtol=1e-4)


def test_fitted_vector_metadata_and_round_trip(model_tok, tmp_path):
    model, tok = model_tok
    vec = fit_steering_vector(model, tok, PAIRS, layers=[-1], config=CFG)
    meta = vec.metadata
    for key in (
        "model_id",
        "revision",
        "tokenizer_hash",
        "hook_point",
        "dtype",
        "objective",
        "top_k",
        "ig_steps",
        "layers",
        "aggregate",
        "mode",
        "data_hash",
        "package_version",
        "hidden_size",
        "num_layers",
    ):
        assert key in meta, key
    assert meta["layers"] == [2] and meta["canonical"] is True and meta["ig_completeness_mean_abs_error"] is not None
    back = type(vec).load(vec.save(tmp_path / "v.safetensors"), model)
    assert torch.equal(back.vectors[2], vec.vectors[2])
    legacy = fit_steering_vector(model, tok, PAIRS[:2], [-1], replace(CFG, objective="legacy_off_by_one"))
    assert legacy.metadata["canonical"] is False


@pytest.mark.parametrize("selection", ["random", "all"])
def test_no_attribution_controls(model_tok, selection):
    model, tok = model_tok
    cfg = replace(CFG, selection=selection)
    ex = extract_deltas(model, tok, PAIRS, [2], cfg)
    assert all(a is None for a in ex.attributions)
    if selection == "all":
        assert torch.equal(ex.deltas_pos, ex.deltas_neg)
    again = extract_deltas(model, tok, PAIRS, [2], cfg, batch_size=1)
    assert all(torch.equal(a, b) for a, b in zip(ex.top_pos, again.top_pos))  # seeded per example


@pytest.mark.parametrize("mask", ["pad_id", "unk_id", "mask_id", "mean", "attention"])
def test_mask_options_and_position_last(model_tok, mask):
    model, tok = model_tok
    ex = extract_deltas(model, tok, PAIRS[:2], [1], replace(CFG, mask=mask, check_completeness=False))
    assert ex.deltas_pos.shape == (2, 1, 16) and ex.deltas_pos.abs().sum() > 0
    if mask == "attention":
        last = extract_deltas(model, tok, PAIRS[:2], [1], replace(CFG, position="last", include_response=True))
        assert last.deltas_pos.shape == (4, 1, 16)  # one row per sequence s⁺, s⁻


def test_exclude_special_never_selects_bos(model_tok):
    model, tok = model_tok
    ex = extract_deltas(model, tok, PAIRS, [1], replace(CFG, exclude_special=True, top_k=20))
    assert all(0 not in p.tolist() for p in ex.top_pos + ex.top_neg)  # position 0 is <s>


def test_sink_and_read_position_are_never_masked_and_plain_top_k_is_an_option(model_tok):
    model, tok = model_tok
    ex = extract_deltas(model, tok, PAIRS, [1], replace(CFG, top_k=20))
    for i, pair in enumerate(PAIRS):
        n = len(encode_pair(tok, pair)[0])
        assert not {0, n - 1} & set(ex.top_pos[i].tolist() + ex.top_neg[i].tolist())
        assert not set(ex.top_pos[i].tolist()) & set(ex.top_neg[i].tolist())
    plain = replace(CFG, signed_selection=False, exclude_first=False, exclude_read_position=False)
    ex = extract_deltas(model, tok, PAIRS[:1], [1], plain)
    assert torch.equal(ex.top_pos[0], torch.topk(ex.attributions[0].scores, 2).indices)
    assert torch.equal(ex.top_neg[0], torch.topk(-ex.attributions[0].scores, 2).indices)


def test_bad_inputs_are_rejected(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="pairs is empty"):
        extract_deltas(model, tok, [], [1], CFG)
    with pytest.raises(ValueError, match="top_k 0 must be >= 1"):
        GrainsConfig(top_k=0)
    with pytest.raises(ValueError, match="position 'first' is not one of"):
        GrainsConfig(position="first")
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        extract_deltas(model, tok, PAIRS, [7], CFG)


def test_alpha_zero_leaves_the_fitted_margin_unchanged(model_tok):
    model, tok = model_tok
    vec = fit_steering_vector(model, tok, PAIRS, layers=[1, 2], config=CFG, aggregate="mean", mode="both")
    prompts = [p.prompt for p in PAIRS]

    def margin():
        good = score_responses(model, tok, prompts, [p.preferred for p in PAIRS])
        bad = score_responses(model, tok, prompts, [p.dispreferred for p in PAIRS])
        return float((good - bad).mean())

    base = margin()
    with steer(model, vec, alpha=0.0):
        assert margin() == base


@pytest.mark.parametrize("field", ["preferred", "dispreferred"])
def test_library_pair_with_an_empty_answer_is_named(model_tok, field):
    from steering import fit_vector

    model, tok = model_tok
    bad = replace(PAIRS[1], **{field: "  "})
    with pytest.raises(ValueError, match=rf"pair 1 has an empty {field} answer"):
        fit_vector(model, tok, [PAIRS[0], bad, PAIRS[2]], "grains", [1, 2], CFG)


def test_library_identical_pairs_are_skipped_and_counted(model_tok):
    """preferred == dispreferred makes the contrastive objective identically 0: skipped with a warning."""
    from steering import fit_vector

    model, tok = model_tok
    same = replace(PAIRS[1], dispreferred=PAIRS[1].preferred)
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 pairs \(pairs \[1\]\).*identical"):
        got = fit_vector(model, tok, [PAIRS[0], same, PAIRS[2]], "grains", [1, 2], CFG)
    ref = fit_vector(model, tok, [PAIRS[0], PAIRS[2]], "grains", [1, 2], CFG)
    assert got.metadata["n_identical_pairs_skipped"] == 1 and got.metadata["n_pairs"] == 2
    for layer in (1, 2):
        torch.testing.assert_close(got.vectors[layer], ref.vectors[layer])


def test_top_k_beyond_the_candidates_is_warned_and_the_effective_k_recorded(model_tok):
    """A k larger than a pair's candidate tokens cannot be honoured: the clamp is warned about and the vector's
    metadata records the k actually used, beside the requested one."""
    model, tok = model_tok
    config = GrainsConfig(top_k=50, ig_steps=2, internal_batch_size=4)
    with pytest.warns(UserWarning, match="top_k 50"):
        vec = fit_steering_vector(model, tok, PAIRS, layers=[1], config=config)
    effective = vec.metadata["effective_top_k"]
    assert effective["requested"] == 50 and effective["rows_below"] > 0
    assert 0 <= effective["min"] <= effective["mean"] < 50
    quiet = GrainsConfig(top_k=1, ig_steps=2, internal_batch_size=4, signed_selection=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = fit_steering_vector(model, tok, PAIRS, layers=[1], config=quiet)
    assert small.metadata["effective_top_k"] == {"requested": 1, "min": 1, "mean": 1.0, "rows_below": 0}


def test_balanced_selection_gives_p_and_q_the_same_size_keeping_the_strongest():
    from steering.extract import select_positions

    scores = torch.tensor([0.0, 3.0, -1.0, 2.0, 5.0, -4.0, 1.0])
    text = torch.tensor([False, True, True, True, True, True, True])  # position 0 is never a candidate
    image = torch.zeros(7, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    cfg = GrainsConfig(top_k=3)
    p, q, k_used = select_positions(scores, text, image, cfg, g)
    assert p.tolist() == [4, 1, 3] and q.tolist() == [5, 2] and k_used == 2  # sign-restricted: unequal sizes
    p, q, k_used = select_positions(scores, text, image, replace(cfg, balanced_selection=True), g)
    assert p.tolist() == [4, 1] and q.tolist() == [5, 2] and k_used == 2
    only_positive = torch.tensor([0.0, 3.0, 1.0, 2.0, 5.0, 4.0, 1.0])
    p, q, k_used = select_positions(only_positive, text, image, replace(cfg, balanced_selection=True), g)
    assert p.numel() == q.numel() == 0 and k_used == 0  # nothing to contrast: both sides mask nothing
