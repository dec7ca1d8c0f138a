"""Agreement of the model's attribution with a prior (cap_lightning.agreement): equal to Spearman / top-k IoU of the
inputs at the chosen level, rows without content left out, DDP-exact means."""

import pytest
import torch

from cap_lightning.agreement import AgreementMetrics, prior_agreement
from cap_lightning.faithfulness import spearman_rows, topk_iou
from lmcore.ranks import average_ranks

# row 0 words: "ab" (tokens 1, 2), "c" (3), "d" (4), "e" (5); row 1: "f", "g"; row 2: only special tokens
WORD_INDEX = torch.tensor([[-1, 0, 0, 1, 2, 3, -1], [-1, 0, 1, -1, -1, -1, -1], [-1, -1, -1, -1, -1, -1, -1]])
CONTENT = WORD_INDEX >= 0
PRIOR_WORDS = [torch.tensor([0.9, 0.1, 0.5, 0.3]), torch.tensor([0.2, 1.0]), torch.tensor([])]


def _broadcast(words):
    out = torch.zeros(WORD_INDEX.shape)
    for b, w in enumerate(words):
        keep = WORD_INDEX[b] >= 0
        out[b, keep] = w[WORD_INDEX[b][keep]]
    return out


def _pearson_of_ranks(a, b):
    m = torch.ones(1, a.numel(), dtype=torch.bool)
    ra, rb = average_ranks(a[None].double(), m)[0], average_ranks(b[None].double(), m)[0]
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def test_subword_agreement_equals_spearman_and_iou_of_the_inputs():
    scores, prior = torch.randn(3, 7), torch.rand(3, 7)
    out = prior_agreement(scores, prior, WORD_INDEX, CONTENT, level="subword", topk_fraction=0.5)
    assert out.rows.tolist() == [True, True, False]  # the row without content is left out
    torch.testing.assert_close(out.spearman, spearman_rows(scores, prior, CONTENT)[:2])
    torch.testing.assert_close(out.topk_iou, topk_iou(scores, prior, CONTENT, 0.5)[:2])


def test_word_agreement_is_spearman_of_word_sums_against_the_word_prior():
    scores = torch.tensor([[9.0, 0.2, 0.3, 0.4, 0.6, 0.05, 9.0], [9.0, 0.1, 0.7, 9.0, 9.0, 9.0, 9.0], [0.0] * 7])
    out = prior_agreement(scores, _broadcast(PRIOR_WORDS), WORD_INDEX, CONTENT, topk_fraction=0.25)
    word_scores = torch.tensor([0.5, 0.4, 0.6, 0.05])  # "ab" = .2 + .3; special tokens never count
    assert float(out.spearman[0]) == pytest.approx(_pearson_of_ranks(word_scores, PRIOR_WORDS[0]))
    assert float(out.spearman[1]) == pytest.approx(1.0)  # g > f on both sides
    # top 1 of 4 words: "d" (.6) by the scores, "ab" (.9) by the prior → IoU 0; row 1: "g" both → 1
    assert out.topk_iou.tolist() == [0.0, 1.0]


def test_word_and_subword_agree_with_one_subword_per_word():
    word_index = torch.tensor([[-1, 0, 1, 2, 3, -1], [-1, 0, 1, 2, -1, -1]])
    content = word_index >= 0
    scores, prior = torch.randn(2, 6), torch.rand(2, 6)
    word = prior_agreement(scores, prior, word_index, content, level="word", topk_fraction=0.5)
    sub = prior_agreement(scores, prior, word_index, content, level="subword", topk_fraction=0.5)
    torch.testing.assert_close(word.spearman, sub.spearman)
    torch.testing.assert_close(word.topk_iou, sub.topk_iou)


def test_a_model_equal_to_its_prior_agrees_perfectly_and_its_reverse_not():
    prior = _broadcast(PRIOR_WORDS)
    same = prior_agreement(prior, prior, WORD_INDEX, CONTENT, level="subword")
    assert same.spearman.tolist() == pytest.approx([1.0, 1.0])
    reverse = prior_agreement(-prior, prior, WORD_INDEX, CONTENT, level="subword")
    assert reverse.spearman.tolist() == pytest.approx([-1.0, -1.0])


def test_bad_level_and_fraction_are_clear_errors():
    prior = _broadcast(PRIOR_WORDS)
    with pytest.raises(ValueError, match="level 'token' is not one of"):
        prior_agreement(prior, prior, WORD_INDEX, CONTENT, level="token")
    with pytest.raises(ValueError, match=r"must be in \(0, 1\], got 0.0"):
        prior_agreement(prior, prior, WORD_INDEX, CONTENT, topk_fraction=0.0)


def test_metric_means_and_ddp_merge():
    prior = _broadcast(PRIOR_WORDS)
    first = prior_agreement(torch.randn(3, 7), prior, WORD_INDEX, CONTENT)
    second = prior_agreement(torch.randn(3, 7), prior, WORD_INDEX, CONTENT)
    m, rank1 = AgreementMetrics(), AgreementMetrics()
    m.update(first)
    rank1.update(second)
    m.merge_state(rank1)
    res = m.compute()
    torch.testing.assert_close(res["spearman"], torch.cat([first.spearman, second.spearman]).mean())
    torch.testing.assert_close(res["topk_iou"], torch.cat([first.topk_iou, second.topk_iou]).mean())
