"""Response log-likelihood: the off-by-one regression, objectives, batching and padding invariance."""

from __future__ import annotations

import pytest
import torch

from steering import SteeringVector, response_logprob_from_logits, score_responses
from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer


def _toy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 5, 7, generator=g)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    resp = torch.tensor([[False, False, True, True, True]])
    lp = logits.log_softmax(-1)
    return logits, ids, resp, lp


def test_response_tokens_are_scored_from_previous_position():
    logits, ids, resp, lp = _toy()
    expected = lp[0, 1, 3] + lp[0, 2, 4] + lp[0, 3, 5]  # token t from logits at t-1
    assert torch.allclose(response_logprob_from_logits(logits, ids, resp, "sum"), expected[None])
    assert torch.allclose(response_logprob_from_logits(logits, ids, resp, "mean"), expected[None] / 3)
    assert torch.allclose(response_logprob_from_logits(logits, ids, resp, "last_token"), lp[0, 3, 5][None])


def test_legacy_off_by_one_reproduces_the_released_bug():
    logits, ids, resp, lp = _toy()
    legacy = response_logprob_from_logits(logits, ids, resp, "legacy_off_by_one")
    assert torch.allclose(legacy, lp[0, 4, 5][None])  # last token re-scored by the last position's logits
    assert not torch.allclose(legacy, response_logprob_from_logits(logits, ids, resp, "last_token"))


def test_bad_objective_and_masks_are_rejected():
    logits, ids, resp, _ = _toy()
    with pytest.raises(ValueError, match="objective 'max' is not one of"):
        response_logprob_from_logits(logits, ids, resp, "max")
    with pytest.raises(ValueError, match="preceding prompt token"):
        response_logprob_from_logits(logits, ids, torch.ones_like(resp), "sum")
    with pytest.raises(ValueError, match="at least one response token"):
        response_logprob_from_logits(logits, ids, torch.zeros_like(resp), "sum")


def test_score_responses_batched_equals_single_for_both_padding_sides():
    model, tok = tiny_causal_lm("llama"), tiny_lm_tokenizer()
    prompts = ["q what is the capital of france a", "q can cats fly a", "q is it hot a"]
    responses = [" paris", " no they can not fly", " yes"]
    single = torch.cat([score_responses(model, tok, [p], [r], batch_size=1) for p, r in zip(prompts, responses)])
    for side in ("left", "right"):
        batched = score_responses(model, tok, prompts, responses, batch_size=3, padding_side=side)
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_a_chat_template_with_bos_is_never_given_a_second_bos(monkeypatch):
    """Llama 3 / Gemma chat templates render BOS into the text: scoring, side effects and generation must not add
    another one."""
    from steering.scoring import encode_prompt_response
    from steering.tasks import generation, side_effects
    from steering.tasks.prompts import format_prompt

    tok = tiny_lm_tokenizer()
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %} A:"
    prompt = format_prompt(tok, "is the sky blue?", chat_template=True)
    assert prompt.startswith(tok.bos_token)
    x, _ = encode_prompt_response(tok, prompt, " yes")
    assert int((x == tok.bos_token_id).sum()) == 1 and int(x[0]) == tok.bos_token_id
    plain, _ = encode_prompt_response(tok, "Q: is the sky blue?\nA:", " yes")  # no template: BOS added as before
    assert int(plain[0]) == tok.bos_token_id and int((plain == tok.bos_token_id).sum()) == 1

    seen = []
    model = tiny_causal_lm("llama")
    forward = model.forward

    def spy(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            seen.append(int((ids[0] == tok.bos_token_id).sum()))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    example = generation.GenExample(prompt=prompt, reference="yes")
    generation.generate_answers(model, tok, [example], max_new_tokens=1)
    vec = SteeringVector({1: torch.ones(16)}, {"num_layers": 3})
    side_effects.prompt_side_effects(model, tok, [prompt], vec, 1.0)
    assert seen and all(n == 1 for n in seen)
