"""Faithfulness and agreement metrics: hand-computed erasure on a toy bag-of-tokens model, selection and packing
rules, soft variants, Spearman / top-k IoU, metric accumulation, and one end-to-end run on a tiny BERT."""

import math

import pytest
import torch

from cap_lightning.attribution import self_attribution
from cap_lightning.faithfulness import (
    DEFAULT_FRACTIONS,
    FaithfulnessMetrics,
    classifier_embeds,
    content_mask,
    erasure_inputs,
    erasure_scores,
    faithfulness_step,
    left_pack,
    normalise_importance,
    num_selected,
    rationale_mask,
    rationale_scores,
    soft_erasure_scores,
    spearman_rows,
    token_importance,
    top_k_mask,
    topk_iou,
)
from cap_lightning.tokens import batch_word_index
from tests.tiny import tiny_classifier, tiny_tokenizer

# ---------------------------------------------------------------------------------------------- toy model
# ids: PAD=0, CLS=1, SEP=2, content a..f = 3..8. Class-1 logit = Σ_attended w[id], class-0 logit = 0, so
# p(1|tokens) = σ(Σ w). PAD weighs 100: any attended padding would show.
PAD, CLS, SEP, A, B, C, D, E, F = range(9)
W = torch.tensor([100.0, 0.5, -0.25, 2.0, -1.0, 0.5, 1.0, -2.0, 0.5])
IDS = torch.tensor([[CLS, A, B, C, D, SEP, PAD], [CLS, E, F, SEP, PAD, PAD, PAD]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]])
WORD_INDEX = torch.tensor([[-1, 0, 1, 2, 3, -1, -1], [-1, 0, 1, -1, -1, -1, -1]])
# rationale order: row 0 a > d > c > b, row 1 f > e; specials and padding score highest and must never be chosen
SCORES = torch.tensor([[10.0, 0.9, 0.1, 0.5, 0.7, 10.0, 10.0], [10.0, 0.3, 0.8, 10.0, 10.0, 10.0, 10.0]])
BATCH = {"input_ids": IDS, "attention_mask": MASK, "word_index": WORD_INDEX}


def toy_forward(batch):
    s = (W[batch["input_ids"]] * batch["attention_mask"]).sum(-1)
    return torch.stack([torch.zeros_like(s), s], -1)


def toy_embeds(dim=1):
    return W[IDS].unsqueeze(-1).expand(-1, -1, dim) / dim  # (B, T, d): Σ_d = w[id]


def toy_embeds_forward(embeds):
    reps = embeds.shape[0] // IDS.shape[0]
    s = (embeds.sum(-1) * MASK.repeat(reps, 1)).sum(-1)  # a zeroed token contributes nothing, like a deleted one
    return torch.stack([torch.zeros_like(s), s], -1)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------- hard metrics
def test_erasure_scores_match_hand_computation():
    out = erasure_scores(toy_forward, BATCH, SCORES, (0.01, 0.25, 0.5, 1.0))
    # full inputs: row 0 Σ = .5+2−1+.5+1−.25 = 2.75 → ŷ = 1; row 1 Σ = .5−2+.5−.25 = −1.25 → ŷ = 0
    assert out.pred.tolist() == [1, 0]
    p0, p1 = sigmoid(2.75), sigmoid(1.25)  # p(ŷ|x); row 1's p(0|Σ) = σ(−Σ)
    torch.testing.assert_close(out.prob, torch.tensor([p0, p1]))
    # row 0 (n=4): k = 1, 1, 2, 4. comp removes {a}, {a}, {a,d}, all; suff keeps [CLS] r [SEP]
    comp0 = [p0 - sigmoid(0.75), p0 - sigmoid(0.75), p0 - sigmoid(-0.25), p0 - sigmoid(0.25)]
    suff0 = [p0 - sigmoid(2.25), p0 - sigmoid(2.25), p0 - sigmoid(3.25), 0.0]
    # row 1 (n=2): k = 1, 1, 1, 2. comp removes {f}, …, all; suff keeps {f}, …, all
    comp1 = [p1 - sigmoid(1.75)] * 3 + [p1 - sigmoid(-0.25)]
    suff1 = [p1 - sigmoid(-0.75)] * 3 + [0.0]
    torch.testing.assert_close(out.comp, torch.tensor([comp0, comp1]))
    torch.testing.assert_close(out.suff, torch.tensor([suff0, suff1]))


def test_erasure_scores_reuse_given_logits_and_run_one_forward_per_bin():
    calls = []

    def counting(batch):
        calls.append(batch["input_ids"].shape[0])
        return toy_forward(batch)

    ref = erasure_scores(toy_forward, BATCH, SCORES)
    out = erasure_scores(counting, BATCH, SCORES, logits=toy_forward(BATCH))
    assert calls == [4] * len(DEFAULT_FRACTIONS)  # comp and suff of a bin together: 2B rows
    torch.testing.assert_close(out.comp, ref.comp)
    assert out.comp.shape == (2, len(DEFAULT_FRACTIONS))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fractions_are_clear_errors(bad):
    with pytest.raises(ValueError, match="fraction"):
        erasure_scores(toy_forward, BATCH, SCORES, (0.1, bad))
    with pytest.raises(ValueError, match="fraction must be in"):
        top_k_mask(SCORES, content_mask(BATCH), bad)
    with pytest.raises(ValueError, match="fraction"):
        FaithfulnessMetrics(fractions=(bad,))
    with pytest.raises(ValueError, match="topk_fraction"):
        FaithfulnessMetrics(topk_fraction=bad)


def test_other_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="distinct"):
        FaithfulnessMetrics(fractions=(0.1, 0.1))
    with pytest.raises(ValueError, match="must not be empty"):
        erasure_scores(toy_forward, BATCH, SCORES, ())
    with pytest.raises(ValueError, match=r"scores has shape \(2, 6\)"):
        erasure_scores(toy_forward, BATCH, SCORES[:, :6])
    with pytest.raises(ValueError, match="NaN"):
        erasure_scores(toy_forward, BATCH, torch.where(WORD_INDEX == 1, float("nan"), SCORES))
    with pytest.raises(ValueError, match="word_index"):
        erasure_scores(toy_forward, {"input_ids": IDS, "attention_mask": MASK}, SCORES)


# ---------------------------------------------------------------------------------------------- selection
def test_k_rounds_up_with_a_float_tolerance_and_at_least_one():
    n = torch.tensor([10, 10, 10, 10, 10, 10, 0, 3, 1])
    fractions = [0.01, 0.1, 0.15, 0.3, 0.7, 1.0, 0.5, 0.5, 0.01]
    expected = [1, 1, 2, 3, 7, 10, 0, 2, 1]  # 0.3·10 and 0.7·10 are 3.0000000000000004 and 7.000000000000001
    assert [int(num_selected(n[i : i + 1], f)) for i, f in enumerate(fractions)] == expected


def test_ties_break_by_position_and_non_content_is_never_selected():
    scores = torch.tensor([[9.0, 0.5, 0.9, 0.9, 0.1, 9.0], [9.0, 0.9, 0.5, 0.5, 0.5, 9.0]])
    content = torch.tensor([[False, True, True, True, True, False]] * 2)
    assert top_k_mask(scores, content, 0.25).nonzero().tolist() == [[0, 2], [1, 1]]  # k = 1: the earlier 0.9
    assert top_k_mask(scores, content, 0.5).nonzero().tolist() == [[0, 2], [0, 3], [1, 1], [1, 2]]
    constant = torch.zeros(2, 6)
    assert top_k_mask(constant, content, 0.5).nonzero().tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
    # −inf content scores still rank above any non-content token
    neg = torch.full((2, 6), -math.inf)
    assert top_k_mask(neg, content, 1.0).equal(content)


def test_special_tokens_are_never_removed_and_always_kept():
    content = content_mask(BATCH)
    for fraction in (*DEFAULT_FRACTIONS, 1.0):
        comp, suff = erasure_inputs(IDS, MASK, content, SCORES, fraction)
        for packed in (comp, suff):
            ids = [row[m.bool()].tolist() for row, m in zip(packed["input_ids"], packed["attention_mask"])]
            assert all(r[0] == CLS and r[-1] == SEP for r in ids), (fraction, ids)
            assert all(PAD not in r for r in ids)
    comp, suff = erasure_inputs(IDS, MASK, content, SCORES, 0.5)
    assert comp["input_ids"].tolist() == [[CLS, B, C, SEP], [CLS, E, SEP, PAD]]
    assert suff["input_ids"].tolist() == [[CLS, A, D, SEP], [CLS, F, SEP, PAD]]
    assert suff["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


# ---------------------------------------------------------------------------------------------- packing
def test_left_pack_moves_kept_tokens_to_the_front_in_order():
    ids = torch.tensor([[1, 11, 12, 13, 14, 2], [1, 21, 22, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    keep = torch.tensor([[True, False, True, False, True, True], [True, True, False, True, True, True]])
    out = left_pack(keep, ids, mask, types, pad_token_id=7)
    assert out["input_ids"].tolist() == [[1, 12, 14, 2], [1, 21, 2, 7]]  # unattended positions dropped
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 0, 1, 0]]
    wide = left_pack(keep, ids, mask, pad_token_id=7, width=6)
    assert wide["input_ids"].tolist() == [[1, 12, 14, 2, 7, 7], [1, 21, 2, 7, 7, 7]]
    assert "token_type_ids" not in wide
    with pytest.raises(ValueError, match="width 3 is shorter"):
        left_pack(keep, ids, mask, width=3)


def test_left_pack_turns_an_empty_row_into_one_attended_pad():
    ids, mask = torch.tensor([[5, 6], [5, 6]]), torch.ones(2, 2, dtype=torch.long)
    out = left_pack(torch.tensor([[False, False], [True, False]]), ids, mask, pad_token_id=0)
    assert out["input_ids"].tolist() == [[0], [5]]
    assert out["attention_mask"].tolist() == [[1], [1]]


def test_left_packed_batch_equals_unpadded_single_rows_on_a_real_model():
    """Packing + padding must not change what the model sees: batched packed rows == each row alone, unpadded."""
    model, tok = tiny_classifier(3, seed=1), tiny_tokenizer()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    enc, wi = batch_word_index(tok, ["this movie is great fun", "bad film", "i love this very good film"], 16)
    content = (wi >= 0) & (enc["attention_mask"] > 0)
    scores = torch.randn(wi.shape)
    types = torch.randint(0, 2, wi.shape)  # the tiny tokenizer has none; check they are packed along
    for packed in erasure_inputs(
        enc["input_ids"], enc["attention_mask"], content, scores, 0.4, tok.pad_token_id, types
    ):
        with torch.no_grad():
            batched = model(**packed).logits
            for b in range(3):
                n = int(packed["attention_mask"][b].sum())
                alone = model(**{k: v[b : b + 1, :n] for k, v in packed.items()}).logits
                torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- soft metrics
def test_soft_metrics_equal_hard_ones_for_zero_one_importance():
    content = content_mask(BATCH)
    for fraction in (0.25, 0.5, 1.0):
        importance = top_k_mask(SCORES, content, fraction).float()
        hard = erasure_scores(toy_forward, BATCH, SCORES, (fraction,))
        soft = soft_erasure_scores(toy_embeds_forward, toy_embeds(4), content, importance, generator=3, samples=2)
        torch.testing.assert_close(soft.comp, hard.comp[:, 0])
        torch.testing.assert_close(soft.suff, hard.suff[:, 0])
        assert soft.pred.equal(hard.pred)


def test_soft_metrics_are_deterministic_given_a_seed():
    content = content_mask(BATCH)
    importance = normalise_importance(SCORES, content)
    run = lambda g: soft_erasure_scores(toy_embeds_forward, toy_embeds(8), content, importance, generator=g, samples=3)  # noqa: E731
    a, b, c = run(5), run(torch.Generator().manual_seed(5)), run(6)
    torch.testing.assert_close(a.comp, b.comp)
    torch.testing.assert_close(a.suff, b.suff)
    assert not torch.allclose(a.comp, c.comp)


def test_soft_metrics_leave_special_tokens_untouched():
    content = content_mask(BATCH)
    zero = torch.zeros(2, 7)  # every content element dropped in soft-suff, all kept in soft-comp
    soft = soft_erasure_scores(toy_embeds_forward, toy_embeds(2), content, zero, generator=0)
    only_specials = torch.tensor([0.5 - 0.25, 0.5 - 0.25])  # [CLS] + [SEP] survive
    p_only = torch.stack([torch.sigmoid(only_specials[0]), torch.sigmoid(-only_specials[1])])
    torch.testing.assert_close(soft.suff, soft.prob - p_only)
    torch.testing.assert_close(soft.comp, torch.zeros(2))


def test_soft_metrics_reject_bad_importance_and_samples():
    content = content_mask(BATCH)
    with pytest.raises(ValueError, match=r"importance must lie in \[0, 1\]"):
        soft_erasure_scores(toy_embeds_forward, toy_embeds(), content, SCORES * 2)
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        soft_erasure_scores(toy_embeds_forward, toy_embeds(), content, torch.zeros(2, 7), samples=0)


def test_normalise_importance_is_min_max_per_row_and_half_on_constant_rows():
    scores = torch.tensor([[9.0, 2.0, 4.0, 0.0, 9.0], [9.0, 3.0, 3.0, 3.0, 9.0], [9.0, -1.0, 9.0, 9.0, 9.0]])
    content = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([[0.0, 0.5, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise_importance(scores, content), expected)


# ---------------------------------------------------------------------------------------------- agreement
def test_spearman_on_hand_examples_with_ties_and_masking():
    mask = torch.tensor([[False, True, True, True, True, False]] * 2)
    a = torch.tensor([[99.0, 1, 2, 3, 4, -9], [99.0, 1, 2, 2, 3, -9]])
    b = torch.tensor([[-5.0, 1, 3, 2, 4, 50], [-5.0, 1, 2, 3, 4, 50]])
    rho = spearman_rows(a, b, mask)
    # row 0: d = (0, 1, −1, 0) → 1 − 6·2 / (4·15) = 0.8; row 1: average ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4)
    torch.testing.assert_close(rho, torch.tensor([0.8, 3 / math.sqrt(10)]))
    scipy_stats = pytest.importorskip("scipy.stats")
    for r in range(2):
        assert rho[r].item() == pytest.approx(scipy_stats.spearmanr(a[r, 1:5], b[r, 1:5]).statistic, abs=1e-6)


def test_spearman_is_nan_free_on_constant_and_short_rows():
    mask = torch.tensor([[True, True, True], [True, True, True], [True, False, False], [False, False, False]])
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert spearman_rows(a, b, mask).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert spearman_rows(a, b, mask, constant=float("nan")).isnan().all()


def test_topk_iou_on_hand_examples():
    mask = torch.tensor([[True, True, True, True], [True, True, True, True], [False, False, False, False]])
    a = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[4.0, 1.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(topk_iou(a, b, mask, 0.5), torch.tensor([1 / 3, 0.0, 0.0]))
    torch.testing.assert_close(topk_iou(a, a, mask, 0.25), torch.tensor([1.0, 1.0, 0.0]))
    # a constant prior ranks by position: the first k tokens
    torch.testing.assert_close(topk_iou(a, torch.zeros(3, 4), mask, 0.5), torch.tensor([1.0, 1.0, 0.0]))


# ---------------------------------------------------------------------------------------------- word level
# row 0 as words: "ab" (a, b), "c", "d"; row 1: "e", "f" (one subword each)
WORDS_INDEX = torch.tensor([[-1, 0, 0, 1, 2, -1, -1], [-1, 0, 1, -1, -1, -1, -1]])
WORDS_BATCH = {"input_ids": IDS, "attention_mask": MASK, "word_index": WORDS_INDEX}


def test_word_level_equals_subword_level_with_one_subword_per_word():
    fractions = (0.01, 0.25, 0.5, 1.0)
    word = erasure_scores(toy_forward, BATCH, SCORES, fractions, level="word")
    sub = erasure_scores(toy_forward, BATCH, SCORES, fractions, level="subword")
    torch.testing.assert_close(word.comp, sub.comp)
    torch.testing.assert_close(word.suff, sub.suff)
    content = content_mask(BATCH)
    q_word = token_importance(SCORES, content, level="word", word_index=WORD_INDEX)
    torch.testing.assert_close(q_word, normalise_importance(SCORES, content))


def test_word_level_removes_every_subword_of_a_chosen_word_by_hand():
    out = erasure_scores(toy_forward, WORDS_BATCH, SCORES, (0.33, 1.0), level="word")
    p0 = sigmoid(2.75)
    # row 0 word scores: ab = .9 + .1 = 1.0 > d = .7 > c = .5; top 1 of 3 words = "ab", both subwords
    # comp keeps [CLS] c d [SEP]: .5 + .5 + 1 − .25 = 1.75; suff keeps [CLS] a b [SEP]: .5 + 2 − 1 − .25 = 1.25
    torch.testing.assert_close(out.comp[0, 0], torch.tensor(p0 - sigmoid(1.75)))
    torch.testing.assert_close(out.suff[0, 0], torch.tensor(p0 - sigmoid(1.25)))


def test_removing_every_word_leaves_the_special_tokens_only():
    for level in ("word", "subword"):
        out = erasure_scores(toy_forward, WORDS_BATCH, SCORES, (1.0,), level=level)
        specials = {k: v.clone() for k, v in WORDS_BATCH.items()}
        specials["attention_mask"] = specials["attention_mask"] * (WORDS_INDEX < 0)
        p_empty = toy_forward(specials).softmax(-1).gather(-1, out.pred[:, None]).squeeze(-1)
        torch.testing.assert_close(out.comp[:, 0], out.prob - p_empty)  # comp@100 = p(ŷ|x) − p(ŷ|∅)
        torch.testing.assert_close(out.suff[:, 0], torch.zeros(2))  # suff@100 = 0: the whole text is kept


def test_word_rank_is_by_the_summed_score_not_the_best_subword():
    scores = torch.tensor([[0.0, 0.9, -0.8, 0.5, 0.7, 0.0, 0.0], [0.0, 0.3, 0.8, 0.0, 0.0, 0.0, 0.0]])
    content = content_mask(WORDS_BATCH)
    sub = rationale_mask(scores, content, 0.25, level="subword")
    word = rationale_mask(scores, content, 0.33, level="word", word_index=WORDS_INDEX)
    assert sub[0].nonzero().flatten().tolist() == [1]  # token a
    assert word[0].nonzero().flatten().tolist() == [4]  # word "d" (.7) beats "ab" (.1) and "c" (.5)
    q = token_importance(scores, content, level="word", word_index=WORDS_INDEX)
    assert q[0, 1] == q[0, 2] and q[0, 4] == 1.0 and q[0, 1] == 0.0  # a word's subwords share its importance


def test_word_level_needs_word_index_and_a_known_level():
    content = content_mask(BATCH)
    with pytest.raises(ValueError, match="needs word_index"):
        rationale_mask(SCORES, content, 0.5, level="word")
    with pytest.raises(ValueError, match="level 'token' is not one of"):
        erasure_scores(toy_forward, BATCH, SCORES, level="token")


def test_normalised_comp_suff_divide_each_row_by_its_own_confidence():
    metrics = FaithfulnessMetrics(fractions=(0.5,))
    comp, suff, prob = torch.tensor([[0.2], [0.1]]), torch.tensor([[0.05], [-0.1]]), torch.tensor([0.4, 0.8])
    metrics.update(comp=comp, suff=suff, prob=prob)
    res = metrics.compute()
    torch.testing.assert_close(res["comp_norm@50"], torch.tensor((0.2 / 0.4 + 0.1 / 0.8) / 2))
    torch.testing.assert_close(res["suff_norm@50"], torch.tensor((0.05 / 0.4 - 0.1 / 0.8) / 2))
    torch.testing.assert_close(res["p_pred"], torch.tensor(0.6))
    with pytest.raises(ValueError, match="prob must come with comp/suff"):
        metrics.update(prob=prob)


# ---------------------------------------------------------------------------------------------- torchmetrics
def _values(n, seed):
    g = torch.Generator().manual_seed(seed)
    K = len(DEFAULT_FRACTIONS)
    return {
        "comp": torch.rand(n, K, generator=g),
        "suff": torch.rand(n, K, generator=g),
        "soft_comp": torch.rand(n, generator=g),
        "soft_suff": torch.rand(n, generator=g),
        "spearman": torch.rand(n, generator=g) * 2 - 1,
        "topk_iou": torch.rand(n, generator=g),
    }


def test_metric_accumulation_equals_one_update_on_the_concatenation():
    first, second = _values(3, 0), _values(5, 1)
    both = {k: torch.cat([first[k], second[k]]) for k in first}
    split, whole = FaithfulnessMetrics(), FaithfulnessMetrics()
    split.update(**first)
    split.update(**second)
    whole.update(**both)
    a, b = split.compute(), whole.compute()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    torch.testing.assert_close(b["comp@1"], both["comp"][:, 0].mean())
    torch.testing.assert_close(b["suff@50"], both["suff"][:, -1].mean())
    torch.testing.assert_close(b["comp_aopc"], both["comp"].mean())
    torch.testing.assert_close(b["prior_spearman"], both["spearman"].mean())
    # DDP: states reduce by sum, so merging two ranks' states gives the same means
    rank0, rank1 = FaithfulnessMetrics(), FaithfulnessMetrics()
    rank0.update(**first)
    rank1.update(**second)
    rank0.merge_state(rank1)
    for k, v in rank0.compute().items():
        torch.testing.assert_close(v, b[k])


def test_metric_leaves_out_groups_without_values_and_checks_shapes():
    m = FaithfulnessMetrics(fractions=(0.1, 0.5))
    v = _values(2, 0)
    m.update(comp=v["comp"][:, :2], suff=v["suff"][:, :2])
    assert sorted(m.compute()) == ["comp@10", "comp@50", "comp_aopc", "suff@10", "suff@50", "suff_aopc"]
    with pytest.raises(ValueError, match=r"comp/suff must be \(B, 2\)"):
        m.update(comp=v["comp"], suff=v["suff"])
    with pytest.raises(ValueError, match="together"):
        m.update(spearman=v["spearman"])


def test_faithfulness_step_updates_every_group_on_the_toy_model():
    metrics = FaithfulnessMetrics(fractions=(0.25, 0.5, 1.0), topk_fraction=0.5)
    out = faithfulness_step(toy_forward, BATCH, SCORES, metrics, embeds_forward=toy_embeds_forward,
                            embeds=toy_embeds(), generator=0)  # fmt: skip
    hard = erasure_scores(toy_forward, BATCH, SCORES, (0.25, 0.5, 1.0))
    torch.testing.assert_close(out["comp"], hard.comp)
    torch.testing.assert_close(out["prob"], hard.prob)
    res = metrics.compute()
    torch.testing.assert_close(res["comp@25"], hard.comp[:, 0].mean())
    torch.testing.assert_close(res["p_pred"], hard.prob.mean())
    torch.testing.assert_close(res["comp_norm@25"], (hard.comp[:, 0] / hard.prob).mean())
    torch.testing.assert_close(res["suff_norm_aopc"], (hard.suff / hard.prob[:, None]).mean())
    assert {"soft_comp", "soft_suff", "comp_aopc", "suff_aopc", "comp_norm_aopc"} <= res.keys()
    assert "prior_spearman" not in res  # agreement is cap_lightning.agreement's


def test_faithfulness_step_skips_rows_without_content():
    batch = {**BATCH, "word_index": torch.stack([WORD_INDEX[0], torch.full((7,), -1)])}
    metrics = FaithfulnessMetrics()
    out = faithfulness_step(toy_forward, batch, SCORES, metrics)
    assert out["comp"].shape == (1, len(DEFAULT_FRACTIONS))
    assert int(metrics.n_erasure) == 1
    with pytest.raises(ValueError, match="given together"):
        faithfulness_step(toy_forward, batch, SCORES, metrics, embeds=toy_embeds())


# ---------------------------------------------------------------------------------------------- end to end
def test_end_to_end_on_a_tiny_bert_under_inference_mode():
    """As in CapModule.test_step: the batch is made under inference mode, IG of ŷ, then every metric."""
    model, tok = tiny_classifier(3), tiny_tokenizer()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    enc, wi = batch_word_index(tok, ["this movie is great fun", "bad film", "i love this very good film"], 16)
    metrics = FaithfulnessMetrics()

    def forward(b):
        return model(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}).logits

    with torch.inference_mode():
        batch = {k: v.clone() for k, v in {**enc, "word_index": wi, "labels": torch.tensor([0, 2, 1])}.items()}
        batch["prior"] = (wi >= 0).float() * torch.rand(wi.shape)
        assert batch["input_ids"].is_inference()
        logits = forward(batch)
        pred = logits.argmax(-1)

        def attribute(b):
            content = b["word_index"] >= 0
            return self_attribution(model, b["input_ids"], b["attention_mask"], b["labels"], content, "ig", 4, "pad",
                                    tok.pad_token_id, create_graph=False)  # fmt: skip

        scores = rationale_scores(attribute, batch, pred)
        assert scores.shape == wi.shape and scores[wi < 0].eq(0).all()
        embeds_forward, embeds = classifier_embeds(model, batch)
        faithfulness_step(forward, batch, scores, metrics, pad_token_id=tok.pad_token_id, logits=logits,
                          embeds_forward=embeds_forward, embeds=embeds, generator=0)  # fmt: skip
    res = metrics.compute()
    assert len(res) == 4 * len(DEFAULT_FRACTIONS) + 7  # raw and normalised bins, 4 AOPCs, 2 soft, p_pred
    assert all(torch.isfinite(v) for v in res.values())
    assert 0.0 < float(res["p_pred"]) <= 1.0
