"""On a CUDA device the library computes what it computes on the CPU: attributions and their exact alignment gradient
(double backward, math attention), the finite-difference gradients beside it (fused attention allowed), steering hooks
(α = 0 no-op, norms kept, KV cache == recompute), packed GrAInS extraction == padded, and batched MC scores == one at a
time. Marked ``gpu``: skipped without a device; ``make test-gpu`` runs them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cap_lightning.attribution import self_attribution
from cap_lightning.losses import alignment_loss
from cap_lightning.tokens import batch_word_index
from steering import GrainsConfig, SteeringVector, capture_layer_outputs, extract_deltas, steer
from steering.tasks import MCExample, score_examples
from tests.tiny import tiny_classifier, tiny_tokenizer
from tests.tiny_lm import TINY_QUESTIONS, tiny_causal_lm, tiny_lm_tokenizer, tiny_pairs

pytestmark = pytest.mark.gpu
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TEXTS = ["a good film", "a bad plot twist", "good good bad"]


def _aligned(device: torch.device, method: str, gradient: str):
    """Attributions and the gradient of a KL alignment loss over every parameter, on ``device``."""
    model = tiny_classifier(3)
    with torch.no_grad():  # larger weights than the default init, so logits move measurably with the input
        for p in model.parameters():
            p.mul_(4.0)
    model = model.to(device)
    enc, wi = batch_word_index(tiny_tokenizer(), TEXTS, 16)
    ids, mask, content = enc["input_ids"].to(device), enc["attention_mask"].to(device), (wi >= 0).to(device)
    y = torch.tensor([0, 2, 1], device=device)
    prior = torch.rand(content.shape, generator=torch.Generator().manual_seed(1)).to(device)
    a = self_attribution(model, ids, mask, y, content, method, 8, "pad", 0, gradient=gradient)
    alignment_loss("kl", a, prior, content).backward()
    grads = torch.cat(
        [torch.zeros_like(p).flatten() if p.grad is None else p.grad.flatten() for p in model.parameters()]
    )
    return a.detach().cpu(), grads.double().cpu()


@pytest.mark.parametrize("method", ["ig", "grad_x_input"])
def test_exact_alignment_gradient_on_cuda_equals_the_cpu(method):
    a_cpu, g_cpu = _aligned(CPU, method, "exact")
    a_gpu, g_gpu = _aligned(CUDA, method, "exact")
    torch.testing.assert_close(a_gpu, a_cpu, rtol=1e-4, atol=1e-6)
    assert g_cpu.norm() > 0
    assert (g_gpu - g_cpu).norm() <= 1e-4 * g_cpu.norm()


@pytest.mark.parametrize("gradient", ["finite_difference", "one_sided_difference"])
def test_finite_difference_gradient_on_cuda_matches_the_exact_one(gradient):
    a_exact, g_exact = _aligned(CUDA, "ig", "exact")
    a_fd, g_fd = _aligned(CUDA, "ig", gradient)
    torch.testing.assert_close(a_fd, a_exact, rtol=1e-4, atol=1e-6)
    assert torch.nn.functional.cosine_similarity(g_fd, g_exact, 0) >= 0.99
    assert (g_fd - g_exact).norm() <= 1e-2 * g_exact.norm()


def _vector(layers=(1, 2), d=16) -> SteeringVector:
    g = torch.Generator().manual_seed(0)
    return SteeringVector({layer: torch.randn(d, generator=g) for layer in layers}, {"num_layers": 3})


def test_steering_on_cuda_is_a_no_op_at_alpha_zero_keeps_norms_and_caches_exactly():
    model = tiny_causal_lm("llama").to(CUDA)
    ids = torch.tensor([[2, 9, 8, 10, 31, 12, 33, 7]], device=CUDA)
    base = model(ids).logits
    with steer(model, _vector(), alpha=0.0):
        assert torch.equal(model(ids).logits, base)
    with capture_layer_outputs(model, [1]) as before:
        model(ids)
        h0 = before[1].clone()
    with steer(model, _vector((1,)), alpha=3.0), capture_layer_outputs(model, [1]) as after:
        model(ids)
        torch.testing.assert_close(after[1].norm(dim=-1), h0.norm(dim=-1))
        assert not torch.allclose(after[1], h0)
    kw = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    with steer(model, _vector(), alpha=4.0):
        cached = model.generate(ids, use_cache=True, **kw)
        full = model.generate(ids, use_cache=False, **kw)
    assert torch.equal(cached.sequences, full.sequences)
    for a, b in zip(cached.scores, full.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:top_k")
def test_packed_extraction_on_cuda_equals_padded_and_the_cpu():
    tok, pairs = tiny_lm_tokenizer(), tiny_pairs()
    cfg = GrainsConfig(top_k=2, ig_steps=8)
    model = tiny_causal_lm("llama")
    cpu = extract_deltas(model, tok, pairs, None, cfg, batch_size=3)
    model = model.to(CUDA)
    packed = extract_deltas(model, tok, pairs, None, cfg, batch_size=3)
    padded = extract_deltas(model, tok, pairs, None, replace(cfg, pack_ig=False), batch_size=2)
    torch.testing.assert_close(packed.deltas_pos.cpu(), padded.deltas_pos.cpu(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed.deltas_neg.cpu(), padded.deltas_neg.cpu(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed.deltas_pos.cpu(), cpu.deltas_pos.cpu(), atol=1e-5, rtol=1e-4)
    assert [p.tolist() for p in packed.top_pos] == [p.tolist() for p in cpu.top_pos]


def test_batched_mc_scores_on_cuda_equal_one_at_a_time_and_the_cpu():
    tok = tiny_lm_tokenizer()
    examples = [MCExample(f"q {q} a", (" " + good, " " + bad, " i have no comment"),
                          {"mc1": ((0,), (1, 2)), "mc2": ((0, 2), (1,))}, (0, 1))
                for q, good, bad in TINY_QUESTIONS]  # fmt: skip
    model = tiny_causal_lm("llama")
    cpu = score_examples(model, tok, examples, batch_size=7)
    model = model.to(CUDA)
    one = score_examples(model, tok, examples, batch_size=1)
    many = score_examples(model, tok, examples, batch_size=7)
    for a, b, c in zip(one, many, cpu):
        torch.testing.assert_close(b.cpu(), a.cpu(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.cpu(), c.cpu(), atol=1e-5, rtol=1e-5)
