"""Re-using the unsteered layers of repeated forwards: same scores, fewer layers run, full runs where unsafe."""

from __future__ import annotations

import pytest
import torch

from steering.hooks import steer
from steering.prefix_reuse import PrefixStore, input_key, reuse_prefix
from steering.tasks import MCExample
from steering.tasks.scoring import score_examples
from steering.vectors import SteeringVector
from tests.tiny_lm import TINY_QUESTIONS, tiny_causal_lm, tiny_lm_tokenizer


def _vector(layers: list[int], hidden: int = 16, seed: int = 0) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({layer: torch.randn(hidden, generator=g) for layer in layers}, {"method": "test"})


@pytest.fixture(autouse=True)
def _no_grad():
    """Evaluation, as in a sweep: with gradients on, every forward runs in full."""
    with torch.no_grad():
        yield


def _padded_inputs(tok):
    long = " ".join(["a b c d e"] * 5)  # longer than the tiny Gemma 3's sliding window (16)
    enc = tok(["a b c d e", "b c", "e d c b a a", long], return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "use_cache": False}


def _computing_layers(model) -> tuple[list[int], list]:
    """Indices of the layers whose MLP ran, per forward: the MLP's ``forward`` attribute is wrapped (a hook on it
    would itself force a full forward); the second value undoes the wrapping."""
    calls: list[int] = []
    undo = []
    for i, layer in enumerate(model.model.layers):
        real = layer.mlp.forward
        layer.mlp.forward = lambda *a, real=real, i=i, **k: calls.append(i) or real(*a, **k)
        undo.append(lambda mlp=layer.mlp: delattr(mlp, "forward"))
    return calls, undo


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_replayed_forward_equals_the_full_one_at_every_alpha(family):
    model, tok = tiny_causal_lm(family, layers=4), tiny_lm_tokenizer()
    inputs, vec = _padded_inputs(tok), _vector([2, 3])
    store = PrefixStore()
    for alpha in (1.0, 4.0, -2.0):
        with steer(model, vec, alpha):
            full = model(**inputs).logits
            with reuse_prefix(model, store, first=2):
                reused = model(**inputs).logits
        assert torch.allclose(reused, full, atol=1e-6), (family, alpha)
    assert (store.recorded, store.replayed, store.full, len(store)) == (1, 2, 1, 1)


def test_a_replay_runs_only_the_layers_from_first_on(model_tok):
    model, tok = model_tok
    inputs, store = _padded_inputs(tok), PrefixStore()
    calls, handles = _computing_layers(model)
    with reuse_prefix(model, store, first=2):
        model(**inputs)  # records: every layer runs
        recorded = list(calls)
        calls.clear()
        model(**inputs)
    for restore in handles:
        restore()
    n = len(model.model.layers)
    assert recorded == list(range(n)) and calls == list(range(2, n)) and store.replayed == 1
    assert "forward" not in model.model.layers[0].__dict__  # the class's forward is back after the block


def test_packed_multiple_choice_scores_are_unchanged(model_tok):
    model, tok = model_tok
    dev = [MCExample(f"q {q} a", (" " + g, " " + b), {"binary": ((0,), (1,))}, (0, 1)) for q, g, b in TINY_QUESTIONS]
    vec, store = _vector([1, 2]), PrefixStore()
    for alpha in (2.0, 6.0):
        with steer(model, vec, alpha):
            full = score_examples(model, tok, dev, batch_size=3)
            with reuse_prefix(model, store, first=1):
                reused = score_examples(model, tok, dev, batch_size=3)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(full, reused))
    assert store.replayed == store.recorded > 0


def test_a_hook_below_first_forces_a_full_forward(model_tok):
    model, tok = model_tok
    inputs, store, vec = _padded_inputs(tok), PrefixStore(), _vector([0])
    with steer(model, vec, 5.0):  # steers layer 0, below first: the recorded unsteered prefix would be wrong
        full = model(**inputs).logits
    with reuse_prefix(model, store, first=2):
        model(**inputs)  # records the unsteered prefix
        with steer(model, vec, 5.0):
            steered = model(**inputs).logits
    assert (store.recorded, store.replayed, store.full) == (1, 0, 2) and torch.allclose(steered, full, atol=1e-6)


def test_other_inputs_embeddings_and_caches_are_never_replayed(model_tok):
    model, tok = model_tok
    inputs, store = _padded_inputs(tok), PrefixStore()
    with reuse_prefix(model, store, first=1):
        model(**inputs)
        other = {**inputs, "attention_mask": inputs["attention_mask"].flip(0)}
        model(**other)  # same ids, another mask: another input
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], use_cache=False)
        cached = {k: v for k, v in inputs.items() if k != "use_cache"}
        model(**cached)  # use_cache left to the config (True): a forward that may fill a KV cache
        model.generate(**cached, max_new_tokens=2, do_sample=False)
    assert (store.recorded, store.replayed) == (2, 0) and store.full == 4 + 2
    ids, off = inputs["input_ids"], {"use_cache": False}
    assert None is not input_key({"input_ids": ids, **off}) != input_key({"input_ids": ids + 1, **off})
    assert input_key({"input_ids": ids}) is None  # use_cache left to the config: may fill a KV cache
    assert input_key({"inputs_embeds": embeds}) is None


def test_bad_first_layer_is_refused_by_name(model_tok):
    model, _ = model_tok
    with pytest.raises(ValueError, match="first layer 7 is out of range for a model with 3 decoder layers"):
        with reuse_prefix(model, PrefixStore(), first=7):
            pass


def test_a_sweep_with_prefix_reuse_gives_the_rows_of_one_without(model_tok, tmp_path):
    from steering.sweep import sweep
    from tests.test_steering_sweep import _saved_deltas

    model, tok = model_tok
    path = _saved_deltas(model, tok, tmp_path / "d.deltas.safetensors")
    dev = [MCExample(f"q {q} a", (" " + g, " " + b), {"binary": ((0,), (1,))}, (0, 1)) for q, g, b in TINY_QUESTIONS]
    calls, handles = _computing_layers(model)
    args = (model, tok, path, "grains", dev, [[1], [1, 2], [2]], [1.0, 3.0, 8.0])
    reused = sweep(*args, ks=None, batch_size=4)
    computed_reused = len(calls)
    calls.clear()
    full = sweep(*args, ks=None, batch_size=4, prefix_reuse=False)
    for restore in handles:
        restore()
    assert len(reused) == len(full) == 1 + 2 * 3 * 3
    for a, b in zip(reused, full):
        assert {k: v for k, v in a.items() if k not in ("value", "kl")} == {k: v for k, v in b.items()
                                                                             if k not in ("value", "kl")}  # fmt: skip
        assert a["value"] == pytest.approx(b["value"], abs=1e-6)
        assert a.get("kl") == pytest.approx(b.get("kl"), abs=1e-6)
    assert computed_reused < len(calls)  # fewer layer computations for the same rows


def test_two_inputs_replay_in_any_order(model_tok):
    model, tok = model_tok
    one, two = _padded_inputs(tok), {**_padded_inputs(tok), "input_ids": _padded_inputs(tok)["input_ids"].flip(0)}
    vec, store = _vector([2]), PrefixStore()
    with steer(model, vec, 3.0):
        full = [model(**x).logits for x in (one, two)]
        with reuse_prefix(model, store, first=2):
            model(**one), model(**two)
            replayed = [model(**x).logits for x in (two, one)][::-1]
    assert store.replayed == 2 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, replayed))


def test_hooks_inside_skipped_layers_outputs_gradients_and_nesting_run_in_full(model_tok):
    model, tok = model_tok
    inputs, store = _padded_inputs(tok), PrefixStore()
    with reuse_prefix(model, store, first=2):
        model(**inputs)  # records
        handle = model.model.layers[0].mlp.register_forward_hook(lambda m, a, out: out * 2)
        hooked = model(**inputs).logits
        handle.remove()
        states = model(**inputs, output_hidden_states=True).hidden_states
        with torch.enable_grad():
            model(**inputs)
        with pytest.raises(ValueError, match="already active on this model"):
            with reuse_prefix(model, PrefixStore(), first=1):
                pass
    handle = model.model.layers[0].mlp.register_forward_hook(lambda m, a, out: out * 2)
    assert torch.allclose(hooked, model(**inputs).logits, atol=1e-6)
    handle.remove()
    assert torch.allclose(states[1], model(**inputs, output_hidden_states=True).hidden_states[1], atol=1e-6)
    assert (store.recorded, store.replayed, store.full) == (1, 0, 4)


def test_a_pre_hook_on_the_first_layer_sees_the_replayed_states(model_tok):
    model, tok = model_tok
    inputs, store, seen = _padded_inputs(tok), PrefixStore(), []
    handle = model.model.layers[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    with reuse_prefix(model, store, first=2):
        model(**inputs), model(**inputs)
    handle.remove()
    assert store.replayed == 1 and torch.equal(seen[0], seen[1])


def test_a_forward_that_asked_for_hidden_states_once_does_not_stop_reuse():
    """transformers installs its output-capturing hooks on the first ``output_hidden_states`` call and keeps them;
    they do nothing unless outputs are asked for, so later plain forwards still replay."""
    model, tok = tiny_causal_lm("llama", layers=4), tiny_lm_tokenizer()
    inputs, store = _padded_inputs(tok), PrefixStore()
    model(**inputs, output_hidden_states=True)
    with reuse_prefix(model, store, first=2):
        full = model(**inputs).logits
        assert torch.allclose(model(**inputs).logits, full, atol=1e-6)
    assert store.replayed == 1
