"""α in units of each layer's median hidden-state norm: the norms are the median over real tokens (position 0 and
padding out), and steering with ``alpha_unit="layer_norm"`` equals absolute steering with α · norm per layer."""

import pytest
import torch

from steering import SteeringVector, capture_layer_outputs, steer
from steering.layer_norms import median_layer_norms, with_layer_norms
from steering.scoring import encode_prompt
from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

PROMPTS = ["q what is the capital of france a", "q can cats fly", "the sky is blue and the sun is hot"]


def test_median_norms_are_the_median_over_real_tokens_past_position_zero():
    model, tok = tiny_causal_lm("llama").eval(), tiny_lm_tokenizer()
    norms = median_layer_norms(model, tok, PROMPTS, [0, 2], batch_size=2)  # padded batches
    for layer in (0, 2):
        values = []
        for prompt in PROMPTS:  # one at a time: no padding at all
            with capture_layer_outputs(model, [layer]) as store, torch.no_grad():
                model(encode_prompt(tok, prompt)[None])
            values.append(store[layer][0, 1:].float().norm(dim=-1))
        assert norms[layer] == pytest.approx(float(torch.cat(values).median()), rel=1e-5)


def test_layer_norm_unit_equals_absolute_alpha_times_the_norm_per_layer():
    model, tok = tiny_causal_lm("llama").eval(), tiny_lm_tokenizer()
    g = torch.Generator().manual_seed(0)
    vec = with_layer_norms(SteeringVector({1: torch.randn(16, generator=g), 2: torch.randn(16, generator=g)}),
                           {1: 2.0, 2: 5.0})  # fmt: skip
    ids = encode_prompt(tok, PROMPTS[0])[None]
    with torch.no_grad():
        with steer(model, vec, 0.3, alpha_unit="layer_norm"):
            relative = model(ids).logits
        with steer(model, vec, 0.3 * 2.0, layers=[1]), steer(model, vec, 0.3 * 5.0, layers=[2]):
            absolute = model(ids).logits
        with steer(model, vec, 0.3):
            plain = model(ids).logits
    torch.testing.assert_close(relative, absolute)
    assert not torch.allclose(relative, plain)


def test_missing_or_bad_norms_are_named(tmp_path):
    model = tiny_causal_lm("llama")
    vec = SteeringVector({1: torch.randn(16)})
    with pytest.raises(ValueError, match="with_layer_norms"):
        with steer(model, vec, 1.0, alpha_unit="layer_norm"):
            pass
    with pytest.raises(ValueError, match="alpha_unit"):
        with steer(model, vec, 1.0, alpha_unit="relative"):
            pass
    with pytest.raises(ValueError, match=r"missing \[1\]"):
        with_layer_norms(vec, {2: 1.0})
    with pytest.raises(ValueError, match="not positive"):
        with_layer_norms(vec, {1: 0.0})
    saved = with_layer_norms(vec, {1: 3.0})
    saved.save(tmp_path / "v.safetensors")
    assert SteeringVector.load(tmp_path / "v.safetensors").metadata["layer_norms"] == {"1": 3.0}
    with pytest.raises(ValueError, match="at least one prompt"):
        median_layer_norms(model, tiny_lm_tokenizer(), [], [1])
