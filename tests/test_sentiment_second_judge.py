"""The second sentiment judge re-scores saved continuations and nothing else."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sentiment_second_judge.py"


@pytest.fixture(scope="module")
def judge():
    spec = importlib.util.spec_from_file_location("sentiment_second_judge", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(base: bool) -> dict:
    texts = ["it was wonderful, a delight", "dull and terrible", "the train left at noon"]
    per = {"steered/p_positive": {"index": [0, 1, 2], "value": [0.9, 0.9, 0.9]},
           "steered/positive_rate": {"index": [0, 1, 2], "value": [1.0, 1.0, 1.0]},
           "steered/kl": {"index": [0, 1, 2], "value": [0.1, 0.2, 0.3]}}  # fmt: skip
    conts = {str(j): {"prompt": "p", "steered": t} for j, t in enumerate(texts)}
    if base:
        per |= {"base/p_positive": {"index": [0, 1, 2], "value": [0.1, 0.1, 0.1]},
                "base/positive_rate": {"index": [0, 1, 2], "value": [0.0, 0.0, 0.0]}}  # fmt: skip
        for j, t in enumerate(reversed(texts)):
            conts[str(j)]["base"] = t
    return {"per_example": per, "metrics": {"test/steered/kl": 0.2}, "continuations": conts}


def test_rejudged_scores_follow_the_lexicon_and_leave_the_rest(judge):
    analyzer = judge.SentimentIntensityAnalyzer()
    new = judge.rejudge(_record(base=True), analyzer)
    steered, base = new["per_example"]["steered/p_positive"]["value"], new["per_example"]["base/p_positive"]["value"]
    assert steered[0] > 0.5 > steered[1] and steered[2] == 0.5  # positive, negative, neutral text
    assert base == steered[::-1]  # the base texts are the steered ones reversed
    assert new["per_example"]["steered/positive_rate"]["value"] == [1.0, 0.0, 0.0]  # neutral is not positive
    assert new["metrics"]["test/steered/p_positive"] == pytest.approx(sum(steered) / 3)
    assert new["per_example"]["steered/kl"] == _record(base=True)["per_example"]["steered/kl"]  # untouched
    assert "base/p_positive" not in judge.rejudge(_record(base=False), analyzer)["per_example"]


def test_a_record_whose_continuations_do_not_match_its_scores_is_refused(judge):
    record = _record(base=False)
    del record["continuations"]["2"]
    with pytest.raises(ValueError, match="2 continuations for 3 scored examples"):
        judge.rejudge(record, judge.SentimentIntensityAnalyzer())


def test_agreement_and_shares(judge):
    assert judge.agreement([1, 1, 0, 0], [1, 1, 0, 0]) == (1.0, 1.0)
    same, kappa = judge.agreement([1, 0, 1, 0], [1, 1, 0, 0])  # agreement at chance
    assert same == 0.5 and kappa == pytest.approx(0.0)
    shares = judge.label_shares(judge.SentimentIntensityAnalyzer(), ["wonderful", "terrible", "the train", "a table"])
    assert shares == (0.25, 0.5, 0.25)
