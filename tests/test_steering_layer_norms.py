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


def test_a_fit_stores_every_layers_median_norm_over_its_prompts(model_tok):
    from steering import GrainsConfig
    from steering.fitting import fit_vector
    from tests.tiny_lm import tiny_pairs

    model, tok = model_tok
    vec = fit_vector(model, tok, tiny_pairs(), "caa", [1, 2], GrainsConfig())
    expected = median_layer_norms(model, tok, [p.prompt for p in tiny_pairs()], range(3))  # every layer of 3
    assert vec.metadata["layer_norms"] == {str(layer): value for layer, value in expected.items()}


def test_lightning_test_in_layer_norm_units_equals_absolute_alpha_times_the_norm(tiny_dir, pairs_file, tmp_path):
    """The module's alpha_unit: one steered layer at α in layer-norm units scores exactly as α · norm absolute;
    a vector without stored norms is refused before the weights load."""
    from tests.test_steering_module import _dm, _module, _trainer

    vec = tmp_path / "v.safetensors"
    _trainer().predict(_module(tiny_dir, vec, method="caa"), datamodule=_dm(tiny_dir, pairs_file))
    norm = SteeringVector.load(vec).metadata["layer_norms"]["1"]
    results = {}
    for unit, alpha in (("layer_norm", 0.5), ("absolute", 0.5 * norm), ("absolute", 0.5)):
        module = _module(tiny_dir, vec, method="caa", alpha=alpha, alpha_unit=unit, steer_layers=[1])
        _trainer().test(module, datamodule=_dm(tiny_dir, pairs_file))
        results[unit, alpha] = module.test_results
    relative, absolute, plain = results.values()
    for name in ("test/steered/mc2", "test/steered/kl", "test/steered/nll"):
        assert relative[name] == pytest.approx(absolute[name], rel=1e-5, abs=1e-7)
    assert relative["test/steered/kl"] != pytest.approx(plain["test/steered/kl"], rel=1e-3)
    bare = tmp_path / "bare.safetensors"
    loaded = SteeringVector.load(vec)
    SteeringVector(loaded.vectors, {k: v for k, v in loaded.metadata.items() if k != "layer_norms"}).save(bare)
    with pytest.raises(ValueError, match="with_layer_norms"):
        _trainer().test(_module(tiny_dir, bare, alpha_unit="layer_norm"), datamodule=_dm(tiny_dir, pairs_file))


def test_sweep_in_layer_norm_units_equals_absolute_alpha_times_the_norm(model_tok, tmp_path):
    from steering.fitting import example_deltas
    from steering.sweep import sweep
    from steering.tasks import MCExample
    from steering.writer import merge_predictions, save_deltas
    from tests.tiny_lm import TINY_QUESTIONS, tiny_pairs

    model, tok = model_tok
    layers, deltas, *_ = example_deltas(model, tok, tiny_pairs(), "caa", [1, 2], None, [1], batch_size=3)
    merged = merge_predictions([{"index": list(range(3)), "layers": layers, "deltas": deltas}], expected=3)
    dev = [MCExample(f"q {q} a", (" " + g, " " + b), {"binary": ((0,), (1,))}, (0, 1)) for q, g, b in TINY_QUESTIONS]
    bare = save_deltas(tmp_path / "bare.deltas.safetensors", merged, {"method": "caa"})
    with pytest.raises(ValueError, match=r"layers \[1\] have none"):
        sweep(model, tok, bare, "caa", dev, [[1]], [0.5], alpha_unit="layer_norm")
    with pytest.raises(ValueError, match="alpha_unit"):
        sweep(model, tok, bare, "caa", dev, [[1]], [0.5], alpha_unit="relative")
    path = save_deltas(tmp_path / "d.deltas.safetensors", merged, {"method": "caa", "layer_norms": {"1": 3.0}})
    relative = sweep(model, tok, path, "caa", dev, [[1]], [0.5], alpha_unit="layer_norm")
    absolute = sweep(model, tok, path, "caa", dev, [[1]], [1.5])
    assert relative[1]["value"] == absolute[1]["value"]
    assert relative[1]["kl"] == pytest.approx(absolute[1]["kl"], rel=1e-5) and relative[1]["kl"] > 0
