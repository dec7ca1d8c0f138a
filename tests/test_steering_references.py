"""Score-free references: a constant scorer gets no argmax credit and the true-answer share as MC2; the longest
answer wins under ``longest``; the QA primer precedes the question."""

import pytest

from steering.tasks.prompts import QA_PRIMER, format_prompt
from steering.tasks.references import reference_metrics, reference_scores
from steering.tasks.types import MCExample


def _example(true_long: bool) -> MCExample:
    choices = (" yes it is true indeed", " no") if true_long else (" yes", " no it is not true at all")
    targets = {"mc1": ((0,), (1,)), "mc2": ((0,), (1,))}
    return MCExample("Q: x\nA:", choices, targets, (0, 1))


def test_constant_scorer_gets_no_argmax_credit_and_the_true_share_as_mc2():
    ex = MCExample("q", (" a", " b", " c", " d"), {"mc1": ((0,), (1, 2, 3)), "mc2": ((0, 1), (2, 3))}, (0, 2))
    assert reference_metrics([ex], "constant") == pytest.approx({"mc1": 0.0, "mc2": 0.5})


def test_longest_answer_wins():
    assert reference_metrics([_example(True), _example(False)], "longest") == pytest.approx({"mc1": 0.5, "mc2": 0.5})
    assert reference_scores(_example(True), "longest").argmax() == 0
    with pytest.raises(ValueError, match="reference"):
        reference_scores(_example(True), "shortest")
    with pytest.raises(ValueError, match="no examples"):
        reference_metrics([], "constant")


def test_qa_primer_precedes_the_question():
    plain = format_prompt(None, "Is the sky blue?", chat_template=False)
    primed = format_prompt(None, "Is the sky blue?", chat_template=False, qa_primer=True)
    assert primed == QA_PRIMER + "\n\n" + plain and plain == "Q: Is the sky blue?\nA:"
    assert QA_PRIMER.count("Q: ") == 6


def test_truthfulqa_loads_with_the_primer(shared_data):
    from steering.tasks.truthfulqa import load_truthfulqa

    for variant in ("mc", "binary_2025"):
        plain = load_truthfulqa(None, str(shared_data / "truthfulqa"), variant=variant)[:3]
        primed = load_truthfulqa(None, str(shared_data / "truthfulqa"), variant=variant, qa_primer=True)[:3]
        assert [p.prompt for p in primed] == [QA_PRIMER + "\n\n" + e.prompt for e in plain]
        assert [p.choices for p in primed] == [e.choices for e in plain]
