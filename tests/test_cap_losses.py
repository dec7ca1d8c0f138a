import pytest
import torch

from cap_lightning.losses import alignment_loss, informative_rows

MASK = torch.tensor([[False, True, True, True, False], [False, True, True, False, False]])
PRIOR = torch.tensor([[0.0, 1.0, 0.5, 0.1, 0.0], [0.0, 0.2, 1.0, 0.0, 0.0]])


def test_mse_and_cosine_are_zero_when_attribution_equals_prior():
    a = PRIOR * 3.0  # same shape up to scale
    assert alignment_loss("mse", a, PRIOR, MASK) == pytest.approx(0.0, abs=1e-6)
    assert alignment_loss("cosine", a, PRIOR, MASK) == pytest.approx(0.0, abs=1e-6)


def test_rank_is_zero_when_order_agrees_with_margin():
    a = PRIOR * 100.0
    assert alignment_loss("rank", a, PRIOR, MASK) == pytest.approx(0.0, abs=1e-6)
    assert alignment_loss("rank", -a, PRIOR, MASK) > 0


def test_kl_prefers_aligned_attributions():
    aligned = alignment_loss("kl", torch.log(PRIOR + 1e-3), PRIOR, MASK)
    reversed_ = alignment_loss("kl", -torch.log(PRIOR + 1e-3), PRIOR, MASK)
    assert 0 <= aligned < reversed_


@pytest.mark.parametrize("kind", ["kl", "mse", "cosine", "rank"])
def test_masked_positions_do_not_matter(kind):
    a = torch.randn(2, 5)
    b = a.clone()
    b[~MASK] = torch.randn(int((~MASK).sum())) * 100
    p2 = PRIOR.clone()
    p2[~MASK] = 0.9
    torch.testing.assert_close(alignment_loss(kind, a, PRIOR, MASK), alignment_loss(kind, b, p2, MASK))


@pytest.mark.parametrize("kind", ["kl", "mse", "cosine", "rank"])
def test_empty_mask_gives_connected_zero(kind):
    a = torch.randn(2, 5, requires_grad=True)
    loss = alignment_loss(kind, a, PRIOR, torch.zeros_like(MASK))
    loss.backward()
    assert loss.item() == 0.0 and a.grad is not None


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="alignment loss 'l1' is not one of"):
        alignment_loss("l1", PRIOR, PRIOR, MASK)


@pytest.mark.parametrize("kind", ["kl", "mse", "cosine", "rank"])
def test_an_all_zero_prior_row_gets_no_alignment_gradient(kind):
    prior = PRIOR.clone()
    prior[1] = 0.0  # relu of a non-positive surrogate: the prior says nothing about this text
    a = torch.randn(2, 5, requires_grad=True)
    loss = alignment_loss(kind, a, prior, MASK)
    loss.backward()
    assert torch.equal(a.grad[1], torch.zeros(5))
    assert a.grad[0][MASK[0]].abs().sum() > 0
    # the zero row is left out of the mean, not averaged in as a uniform or zero target
    torch.testing.assert_close(loss, alignment_loss(kind, a[:1], prior[:1], MASK[:1]))
    assert informative_rows(prior, MASK).tolist() == [True, False]
    assert not informative_rows(PRIOR, torch.zeros_like(MASK)).any()
