"""``variable_length_attention``: cuDNN attention off (it builds a graph per new sequence length), the other enabled
SDPA backends kept, flags restored; every entry point that runs a causal LM over texts of varying lengths uses it."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from cap_lightning.adversarial.keyword_injection import generate_rewrites
from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts
from lmcore.attention_backends import variable_length_attention
from steering import ContrastivePair, GrainsConfig, extract_deltas
from steering.scoring import score_responses
from steering.tasks import MCExample, score_examples
from steering.tasks.continuations import generate_continuations
from steering.tasks.generation import GenExample, generate_answers
from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

CUDA = torch.backends.cuda


def _flags() -> tuple[bool, bool, bool, bool]:
    return CUDA.cudnn_sdp_enabled(), CUDA.flash_sdp_enabled(), CUDA.mem_efficient_sdp_enabled(), CUDA.math_sdp_enabled()


def test_cudnn_is_off_inside_the_other_backends_stay_and_flags_are_restored():
    before = _flags()
    assert before[0]  # PyTorch's default: cuDNN attention allowed, so the check below is not vacuous
    with variable_length_attention():
        assert _flags() == (False, *before[1:])
    assert _flags() == before


def test_a_caller_restriction_is_kept():
    with sdpa_kernel(SDPBackend.MATH):
        with variable_length_attention():
            assert _flags() == (False, False, False, True)
        assert _flags() == (False, False, False, True)


def test_it_restores_the_flags_after_an_exception():
    before = _flags()
    with pytest.raises(RuntimeError), variable_length_attention():
        raise RuntimeError("boom")
    assert _flags() == before


def _recording_model():
    model = tiny_causal_lm("llama")
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda *_: seen.append(CUDA.cudnn_sdp_enabled()))
    return model, tiny_lm_tokenizer(), seen


def _examples() -> list[MCExample]:
    return [MCExample("q is the sky blue a", (" yes", " no it is not"), {"mc1": ((0,), (1,))}, (0, 1))]


ENTRY_POINTS = {
    "extract_deltas": lambda m, t: extract_deltas(
        m, t, [ContrastivePair("q can cats fly a", " no", " yes")], config=GrainsConfig(top_k=1, ig_steps=2)
    ),  # fmt: skip
    "score_examples": lambda m, t: score_examples(m, t, _examples()),
    "score_responses": lambda m, t: score_responses(m, t, ["q is fire cold a"], [" no"]),
    "generate_answers": lambda m, t: generate_answers(m, t, [GenExample("q is fire cold a", "no")], 2),
    "generate_continuations": lambda m, t: generate_continuations(m, t, ["q is fire cold a"], 2),
    "generate_rewrites": lambda m, t: generate_rewrites(m, t, ["is the sky blue"], 2, 1),
    "teacher": lambda m, t: TeacherScorer(
        m, t, build_prompt_parts(["yes", "no"], "classify", "q", "a"), ["yes", "no"]
    ).score(["is the sky blue"], [0], progress=False),  # fmt: skip
}


@pytest.mark.filterwarnings("ignore:top_k")
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_points_run_their_forwards_without_cudnn_attention(entry):
    model, tok, seen = _recording_model()
    ENTRY_POINTS[entry](model, tok)
    assert seen and not any(seen)
    assert CUDA.cudnn_sdp_enabled()
