"""Paired differences over test questions (steering.comparisons): lmcore's bootstrap and exact McNemar, per metric."""

from __future__ import annotations

import random

import pytest

from lmcore.statistics import mcnemar_exact, paired_bootstrap_interval
from steering.comparisons import paired_difference


def test_identical_outcomes_make_no_difference():
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    d = paired_difference("mc1", values, values)
    assert (d.mean, d.low, d.high, d.verdict, d.p_mcnemar) == (0.0, 0.0, 0.0, "no difference", 1.0)


def test_right_wrong_outcomes_get_mcnemar_and_the_lmcore_bootstrap_interval():
    rng = random.Random(0)
    a = [float(rng.random() < 0.7) for _ in range(200)]
    b = [float(rng.random() < 0.4) for _ in range(200)]
    d = paired_difference("mc1", a, b, resamples=500, seed=3)
    ref = paired_bootstrap_interval(a, b, 0.95, 500, 3)
    assert (d.mean, d.low, d.high, d.n) == (ref.mean, ref.low, ref.high, 200)
    assert d.p_mcnemar == mcnemar_exact([x == 1 for x in a], [x == 1 for x in b]).p_value
    assert d.low > 0 and d.verdict == "higher" and "McNemar p" in d.cell()
    assert paired_difference("mc1", b, a, resamples=500).verdict == "lower"


def test_probability_masses_get_the_bootstrap_only_and_the_verdict_follows_the_interval():
    rng = random.Random(1)
    a = [rng.random() for _ in range(50)]
    b = [x + rng.gauss(0, 0.05) for x in a]
    d = paired_difference("mc2", a, b, resamples=500)
    assert d.p_mcnemar is None and "McNemar" not in d.cell()
    assert d.low <= d.mean <= d.high
    assert (d.verdict == "no difference") == (d.low <= 0 <= d.high)


def test_unpaired_outcomes_are_refused():
    with pytest.raises(ValueError, match="mc2: paired outcomes need the same non-zero number of questions, got 2 "):
        paired_difference("mc2", [0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="got 0 and 0"):
        paired_difference("mc1", [], [])


def test_the_verdict_on_right_wrong_outcomes_is_the_exact_test_not_the_bootstrap():
    """5 questions right only under the method, none the other way, 91 tied: the percentile bootstrap excludes 0,
    the exact McNemar p is 2 / 2**5 = 0.0625, so the verdict must be "no difference"; one more discordant question
    (p = 0.031) makes it "higher"."""
    base = [0.0] * 5 + [1.0] * 40 + [0.0] * 51
    method = [1.0] * 5 + [1.0] * 40 + [0.0] * 51
    d = paired_difference("mc1", method, base)
    assert d.low > 0 and d.p_mcnemar == pytest.approx(0.0625)
    assert d.verdict == "no difference"
    six = paired_difference("mc1", [1.0] + method[1:] + [1.0], [0.0] + base[1:] + [0.0])
    assert six.p_mcnemar == pytest.approx(2 / 2**6) and six.verdict == "higher"
    assert paired_difference("mc1", [0.0] + base[1:] + [0.0], [1.0] + method[1:] + [1.0]).verdict == "lower"
