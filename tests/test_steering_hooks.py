"""``steer``: exact no-op at α=0, per-token norms, hook cleanup, layer locality, KV-cache parity, structures, scopes."""

from __future__ import annotations

import pytest
import torch

from steering import SteeringVector, capture_layer_outputs, steer, steered_hidden
from tests.tiny_lm import FAMILIES, VLM_FAMILIES, TupleLM, tiny_causal_lm, tiny_vlm

IDS = torch.tensor([[2, 9, 8, 10, 31, 12, 33, 7]])


def _vector(model, layers=(1, 2), seed=0, d=16):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({layer: torch.randn(d, generator=g) for layer in layers}, {"num_layers": 3})


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_alpha_zero_is_exact_noop():
    model = tiny_causal_lm("llama")
    base = model(IDS).logits
    with steer(model, _vector(model), alpha=0.0):
        assert torch.equal(model(IDS).logits, base)


def test_per_token_norm_preserved_and_direction_added():
    model = tiny_causal_lm("llama")
    vec = _vector(model, layers=(1,))
    with capture_layer_outputs(model, [1]) as before:
        model(IDS)
        h0 = before[1].clone()
    with steer(model, vec, alpha=3.0), capture_layer_outputs(model, [1]) as after:
        model(IDS)
        h1 = after[1]
    torch.testing.assert_close(h1.norm(dim=-1), h0.norm(dim=-1))
    expected = steered_hidden(h0, vec.vectors[1], 3.0)
    torch.testing.assert_close(h1, expected)
    cos = torch.nn.functional.cosine_similarity(h1 - h0, vec.vectors[1].expand_as(h0), dim=-1)
    assert (cos > 0).all()


def test_hooks_removed_after_block_and_after_exception():
    model = tiny_causal_lm("llama")
    base = model(IDS).logits
    n0 = _hooks(model)
    with steer(model, _vector(model), alpha=5.0, scope="generated", prompt_length=3):
        assert _hooks(model) > n0
        assert not torch.allclose(model(IDS).logits, base)
    assert _hooks(model) == n0 and torch.equal(model(IDS).logits, base)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, _vector(model), alpha=5.0):
            raise RuntimeError("boom")
    assert _hooks(model) == n0 and torch.equal(model(IDS).logits, base)


def test_steering_layer_l_leaves_earlier_layers_untouched():
    model = tiny_causal_lm("llama")
    with capture_layer_outputs(model, [0, 1, 2]) as store:
        model(IDS)
        base = {k: v.clone() for k, v in store.items()}
    with steer(model, _vector(model, layers=(1,)), alpha=4.0), capture_layer_outputs(model, [0, 1, 2]) as store:
        model(IDS)
        steered = dict(store)
    assert torch.equal(steered[0], base[0])
    assert not torch.allclose(steered[1], base[1]) and not torch.allclose(steered[2], base[2])
    # transformers 5 records output_hidden_states with its own, earlier hook: it shows layer 1 *before* steering
    hs = model(IDS, output_hidden_states=True).hidden_states
    assert torch.equal(hs[1], base[0])


@pytest.mark.parametrize("scope", ["all", "prompt", "generated"])
def test_kv_cached_generation_equals_full_recompute(scope):
    model = tiny_causal_lm("llama")
    vec = _vector(model)
    kw = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    with steer(model, vec, alpha=4.0, scope=scope):
        cached = model.generate(IDS, use_cache=True, **kw)
    with steer(model, vec, alpha=4.0, scope=scope):
        full = model.generate(IDS, use_cache=False, **kw)
    assert torch.equal(cached.sequences, full.sequences)
    for a, b in zip(cached.scores, full.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    plain = model.generate(IDS, use_cache=True, **kw)
    same = all(torch.allclose(a, b) for a, b in zip(plain.scores, cached.scores))
    assert not same  # steering did something


def test_scope_prompt_and_generated_split_positions():
    model = tiny_causal_lm("llama")
    vec = _vector(model, layers=(1,))
    with capture_layer_outputs(model, [1]) as store:
        model(IDS)
        h0 = store[1].clone()
    with steer(model, vec, alpha=3.0, scope="prompt", prompt_length=5), capture_layer_outputs(model, [1]) as s:
        model(IDS)
        hp = s[1].clone()
    with steer(model, vec, alpha=3.0, scope="generated", prompt_length=5), capture_layer_outputs(model, [1]) as s:
        model(IDS)
        hg = s[1].clone()
    assert torch.equal(hp[:, 5:], h0[:, 5:]) and not torch.allclose(hp[:, :5], h0[:, :5])
    assert torch.equal(hg[:, :5], h0[:, :5]) and not torch.allclose(hg[:, 5:], h0[:, 5:])


def test_tuple_returning_layers_keep_their_structure():
    model = TupleLM()
    vec = SteeringVector({1: torch.randn(16)}, {"num_layers": 3})
    outputs = []
    handle = model.model.layers[1].register_forward_hook(lambda m, a, o: outputs.append(o))
    base = model(input_ids=IDS).logits
    with steer(model, vec, alpha=2.0):
        steered = model(input_ids=IDS).logits
    handle.remove()
    assert isinstance(outputs[-1], tuple) and outputs[-1][1] is None
    assert not torch.allclose(base, steered)
    torch.testing.assert_close(outputs[-1][0].norm(dim=-1), outputs[0][0].norm(dim=-1))


def test_bf16_model_gets_vector_in_its_dtype():
    model = tiny_causal_lm("llama").to(torch.bfloat16)
    with steer(model, _vector(model), alpha=2.0), capture_layer_outputs(model, [2]) as store:
        logits = model(IDS).logits
    assert logits.dtype == torch.bfloat16 and store[2].dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()


def test_legacy_seq_axis_reproduces_released_formula():
    h = torch.randn(1, 4, 16)
    v = torch.randn(16)
    s = h + 10 * 0.5 * v
    expected = s * h.norm(dim=1, keepdim=True) / (s.norm(dim=1, keepdim=True) + 1e-8)
    torch.testing.assert_close(steered_hidden(h, v, 0.5, "legacy_seq_axis"), expected)
    one = steered_hidden(h[:, :1], v, 0.5, "legacy_seq_axis")  # T = 1: only signs can change (defect #12)
    torch.testing.assert_close(one.abs(), h[:, :1].abs())
    torch.testing.assert_close(steered_hidden(h, v, 0.5, "none"), h + 0.5 * v)


def test_bad_arguments_are_rejected():
    model = tiny_causal_lm("llama")
    vec = _vector(model)
    with pytest.raises(ValueError, match="scope 'middle' is not one of"):
        with steer(model, vec, 1.0, scope="middle"):
            pass
    with pytest.raises(ValueError, match=r"layers \[0\] have no vector"):
        with steer(model, vec, 1.0, layers=[0]):
            pass
    with pytest.raises(ValueError, match="normalize 'l1' is not one of"):
        with steer(model, vec, 1.0, normalize="l1"):
            pass
    with pytest.raises(ValueError, match="hidden size"):
        with steer(model, SteeringVector({1: torch.randn(8)}), 1.0):
            pass
    assert _hooks(model) == 0


@pytest.mark.parametrize("family", FAMILIES + VLM_FAMILIES)
def test_every_family_is_steerable_and_restored(family):
    model = tiny_causal_lm(family) if family in FAMILIES else tiny_vlm(family)
    d = 16 if family in FAMILIES else 32
    ids = IDS if family != "gpt2" else IDS
    base = model(input_ids=ids).logits
    vec = SteeringVector({2: torch.randn(d)}, {"num_layers": 3})
    with steer(model, vec, alpha=5.0):
        steered = model(input_ids=ids).logits
    assert not torch.allclose(base, steered)
    assert torch.equal(model(input_ids=ids).logits, base)


def test_generated_scope_resets_the_prompt_for_every_new_sequence():
    """A second generate() (or any forward that starts a new sequence) inside one steer block is a new prompt: its
    prompt positions stay unsteered, whatever the first sequence's length was."""
    model = tiny_causal_lm("llama")
    vec = _vector(model)
    short, long = torch.tensor([[5, 6, 40]]), IDS  # two unrelated sequences
    base = model(long).logits
    with steer(model, vec, alpha=6.0, scope="generated"):
        model(short)  # the first sequence: 3 prompt tokens
        torch.testing.assert_close(model(long).logits, base)  # positions 3..7 are this sequence's prompt
        first = model.generate(
            long, max_new_tokens=2, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    torch.testing.assert_close(first.logits[0], base[:, -1])  # the prompt's last position predicts token 1: unsteered


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_alpha_is_refused(alpha):
    """NaN / inf α would turn every steered hidden state (and so every logit) into NaN: refused up front."""
    model = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match=r"alpha (nan|inf|-inf) must be a finite number"):
        with steer(model, _vector(model), alpha=alpha):
            pass
    assert _hooks(model) == 0
