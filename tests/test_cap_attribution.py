import pytest
import torch

from cap_lightning.attribution import (
    classifier_forward,
    embedding_baseline,
    self_attribution,
)
from cap_lightning.losses import alignment_loss
from cap_lightning.tokens import batch_word_index
from tests.tiny import tiny_classifier, tiny_tokenizer

TEXTS = ["this movie is great fun", "bad film", "i love this very good film"]


def _setup(num_labels=3, scale=4.0):
    model = tiny_classifier(num_labels)
    with torch.no_grad():  # larger weights than the default init, so logits move measurably with the input
        for p in model.parameters():
            p.mul_(scale)
    tok = tiny_tokenizer()
    enc, wi = batch_word_index(tok, TEXTS, 16)
    labels = torch.tensor([0, 2, 1])
    return model, tok, enc, wi, labels


def test_ig_completeness_on_tiny_model():
    model, tok, enc, wi, y = _setup()
    content = wi >= 0
    scores = self_attribution(
        model, enc["input_ids"], enc["attention_mask"], y, content, "ig", 32, "pad", tok.pad_token_id, "gausslegendre"
    )
    with torch.no_grad():
        emb = model.get_input_embeddings()(enc["input_ids"])
        base = embedding_baseline(emb, content, "pad", model.get_input_embeddings(), tok.pad_token_id)
        f = classifier_forward(model, enc["input_ids"], enc["attention_mask"])
        gap = f(emb).gather(1, y[:, None])[:, 0] - f(base).gather(1, y[:, None])[:, 0]
    assert gap.abs().min() > 1e-4  # the check below is not vacuous
    torch.testing.assert_close(scores.sum(-1), gap, rtol=1e-3, atol=1e-6)
    assert torch.all(scores[~content] == 0)


def test_batched_equals_unbatched():
    model, tok, enc, wi, y = _setup()
    batched = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, wi >= 0, "ig", 8, "pad", 0)
    for b in range(len(TEXTS)):
        e1, w1 = batch_word_index(tok, [TEXTS[b]], 16)
        single = self_attribution(
            model, e1["input_ids"], e1["attention_mask"], y[b : b + 1], w1 >= 0, "ig", 8, "pad", 0
        )
        n = single.shape[1]
        torch.testing.assert_close(batched[b, :n], single[0], rtol=1e-4, atol=1e-6)


def test_grad_x_input_is_one_step_trapezoid_ig():
    model, tok, enc, wi, y = _setup()
    args = (model, enc["input_ids"], enc["attention_mask"], y, wi >= 0)
    gxi = self_attribution(*args, "grad_x_input", baseline="zero")
    ig1 = self_attribution(*args, "ig", 1, "zero", quadrature="trapezoid")
    torch.testing.assert_close(gxi, ig1)


def test_expected_gradients_is_seeded_and_masked():
    model, tok, enc, wi, y = _setup()
    args = (model, enc["input_ids"], enc["attention_mask"], y, wi >= 0)
    torch.manual_seed(3)
    a = self_attribution(*args, "expected_gradients", baseline_token_id=0)
    torch.manual_seed(3)
    b = self_attribution(*args, "expected_gradients", baseline_token_id=0)
    torch.testing.assert_close(a, b)
    assert torch.all(a[wi < 0] == 0) and a.abs().sum() > 0


@pytest.mark.parametrize("method", ["ig", "grad_x_input", "expected_gradients"])
@pytest.mark.parametrize("loss", ["kl", "mse", "cosine", "rank"])
def test_alignment_loss_has_gradient_on_encoder_weights(method, loss):
    model, tok, enc, wi, y = _setup()
    content = wi >= 0
    a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, content, method, 4, "pad", 0)
    prior = torch.rand(content.shape)
    alignment_loss(loss, a, prior, content).backward()
    grad = model.bert.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_unknown_method_and_missing_baseline_token():
    model, tok, enc, wi, y = _setup()
    args = (model, enc["input_ids"], enc["attention_mask"], y, wi >= 0)
    with pytest.raises(ValueError, match="attribution method 'lime'"):
        self_attribution(*args, "lime")
    with pytest.raises(ValueError, match="needs a tokenizer with a mask token"):
        self_attribution(*args, "ig", baseline="mask", baseline_token_id=None)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_chunked_checkpointed_ig_equals_one_shot_ig_and_its_gradients(chunk_size):
    model, tok, enc, wi, y = _setup()
    content = wi >= 0
    prior = torch.rand(content.shape)
    results = []
    for chunk in (None, chunk_size):
        model.zero_grad()
        a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, content, "ig", 7, "pad", 0,
                             chunk_size=chunk)  # fmt: skip
        alignment_loss("kl", a, prior, content).backward()
        results.append((a.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a0, g0), (a1, g1) = results
    torch.testing.assert_close(a0, a1)
    assert len(g0) == len(g1)
    for x, z in zip(g0, g1):
        torch.testing.assert_close(x, z, rtol=1e-4, atol=1e-6)


def _all_grads(model) -> torch.Tensor:
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten() for p in model.parameters()])


def _aligned_grads(model, enc, wi, y, method, gradient, loss="kl", chunk=None, steps=8):
    content = wi >= 0
    prior = torch.rand(content.shape, generator=torch.Generator().manual_seed(1))
    model.zero_grad()
    torch.manual_seed(5)  # the same Expected Gradients draw for both paths
    a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, content, method, steps, "pad", 0,
                         chunk_size=chunk, gradient=gradient)  # fmt: skip
    value = alignment_loss(loss, a, prior, content)
    value.backward()
    named = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return a.detach(), value.detach(), _all_grads(model), named


FINITE_DIFFERENCES = ["finite_difference", "one_sided_difference"]


@pytest.mark.parametrize("gradient", FINITE_DIFFERENCES)
@pytest.mark.parametrize("method", ["ig", "grad_x_input", "expected_gradients"])
@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_finite_difference_gradient_matches_the_double_backward(method, loss, gradient):
    """Same attribution and loss values; the gradient over all parameters (embedding table included) within 1 %."""
    model, tok, enc, wi, y = _setup()
    a0, l0, g0, n0 = _aligned_grads(model, enc, wi, y, method, "exact", loss)
    a1, l1, g1, n1 = _aligned_grads(model, enc, wi, y, method, gradient, loss)
    torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-7)
    assert g0.norm() > 0
    assert torch.nn.functional.cosine_similarity(g0.double(), g1.double(), 0) >= 0.99
    assert (g1 - g0).norm() <= 1e-2 * g0.norm()
    table = "bert.embeddings.word_embeddings.weight"  # reaches the loss only through x (and its Hessian term)
    assert n0[table].norm() > 0
    assert torch.nn.functional.cosine_similarity(n0[table].flatten(), n1[table].flatten(), 0) >= 0.99


@pytest.mark.parametrize("gradient", FINITE_DIFFERENCES)
def test_finite_difference_chunks_give_the_same_gradient(gradient):
    model, tok, enc, wi, y = _setup()
    a0, _, g0, _ = _aligned_grads(model, enc, wi, y, "ig", gradient, steps=7)
    a1, _, g1, _ = _aligned_grads(model, enc, wi, y, "ig", gradient, chunk=3, steps=7)
    torch.testing.assert_close(a1, a0)
    assert (g1 - g0).norm() <= 5e-3 * g0.norm()  # equal up to the difference's fp32 rounding (batch shapes differ)


@pytest.mark.parametrize("gradient", FINITE_DIFFERENCES)
def test_finite_difference_step_is_checked_and_rows_without_content_add_nothing(gradient):
    model, tok, enc, wi, y = _setup()
    content = wi >= 0
    args = (model, enc["input_ids"], enc["attention_mask"], y)
    with pytest.raises(ValueError, match="step must be > 0"):
        self_attribution(*args, content, "ig", 2, "pad", 0, gradient=gradient, fd_step=0.0)
    with pytest.raises(ValueError, match="attribution gradient 'jvp'"):
        self_attribution(*args, content, "ig", 2, "pad", 0, gradient="jvp")
    model.zero_grad()
    none = torch.zeros_like(content)
    self_attribution(*args, none, "ig", 2, "pad", 0, gradient=gradient).sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.parameters())


@pytest.mark.parametrize("gradient, backward_rows", [("finite_difference", 2), ("one_sided_difference", 1)])
def test_finite_difference_backward_forwards_one_or_two_rows_per_point(gradient, backward_rows):
    """The cost the schemes differ in: the backward forwards each IG point twice (central: z ± εv) or once
    (one-sided: z + εv, the base gradient at z kept from the value pass); the value pass forwards each point once."""
    model, tok, enc, wi, y = _setup()
    rows: list[int] = []
    layer = model.bert.encoder.layer[0]
    handle = layer.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        steps, batch = 4, len(TEXTS)
        a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, wi >= 0, "ig", steps, "pad", 0,
                             gradient=gradient)  # fmt: skip
        assert sum(rows) == steps * batch
        rows.clear()
        alignment_loss("mse", a, torch.rand(a.shape), wi >= 0).backward()
        assert sum(rows) == backward_rows * steps * batch
    finally:
        handle.remove()
