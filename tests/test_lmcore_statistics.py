"""Paired statistics (lmcore.statistics): the t quantile against SciPy, interval invariants, exact McNemar."""

import math
import random

import pytest

from lmcore.statistics import (
    PairedInterval,
    holm,
    mcnemar_exact,
    paired_bootstrap_interval,
    paired_t_interval,
    paired_t_p_value,
    regularized_beta,
    t_cdf,
    t_quantile,
    verdict,
)

A = [0.81, 0.84, 0.79, 0.86, 0.83]
B = [0.80, 0.80, 0.78, 0.82, 0.80]


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 200])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_and_cdf_match_scipy(df, p):
    stats = pytest.importorskip("scipy.stats")
    assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-9, abs=1e-9)
    assert t_cdf(1.7, df) == pytest.approx(float(stats.t.cdf(1.7, df)), rel=1e-10)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_t_quantile_known_values_without_scipy():
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736, rel=1e-8)  # tables
    assert t_quantile(0.975, 4) == pytest.approx(2.776445105, rel=1e-8)
    assert t_quantile(0.5, 3) == 0.0 and t_quantile(0.1, 5) == pytest.approx(-t_quantile(0.9, 5))
    assert regularized_beta(1.0, 1.0, 0.3) == pytest.approx(0.3)  # I_x(1, 1) = x


def test_paired_t_interval_matches_scipy_and_the_formula():
    stats = pytest.importorskip("scipy.stats")
    ci = paired_t_interval(A, B)
    d = [x - y for x, y in zip(A, B)]
    low, high = stats.t.interval(0.95, len(d) - 1, loc=stats.tmean(d), scale=stats.sem(d))
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-9)
    assert ci.mean == pytest.approx(sum(d) / len(d)) and ci.n == 5 and ci.test == "paired t"


def test_identical_inputs_give_zero_intervals_and_no_difference():
    for ci in (paired_t_interval(A, A), paired_bootstrap_interval(A, A, resamples=200)):
        assert ci.low == ci.mean == ci.high == 0.0
        assert verdict(ci) == "no difference"


def test_intervals_contain_the_mean_and_widen_with_confidence():
    for make in (paired_t_interval, lambda a, b, c: paired_bootstrap_interval(a, b, c, resamples=2000)):
        narrow, wide = make(A, B, 0.8), make(A, B, 0.99)
        assert wide.low <= narrow.low <= narrow.mean <= narrow.high <= wide.high
        assert narrow.low < narrow.high


def test_swapping_the_samples_mirrors_the_interval():
    ci, mirrored = paired_t_interval(A, B), paired_t_interval(B, A)
    assert (mirrored.low, mirrored.mean, mirrored.high) == pytest.approx((-ci.high, -ci.mean, -ci.low))
    assert verdict(ci) == "higher" and verdict(mirrored) == "lower"


def test_a_constant_shift_is_a_point_interval_at_the_shift():
    shifted = [x + 0.25 for x in B]
    for ci in (paired_t_interval(shifted, B), paired_bootstrap_interval(shifted, B, resamples=100)):
        assert ci.low == pytest.approx(0.25) and ci.high == pytest.approx(0.25)


def test_bootstrap_is_deterministic_for_a_seed_and_close_to_t_on_a_large_sample():
    rng = random.Random(1)
    a = [rng.gauss(0.1, 1.0) for _ in range(400)]
    b = [rng.gauss(0.0, 1.0) for _ in range(400)]
    one, two = paired_bootstrap_interval(a, b, seed=3), paired_bootstrap_interval(a, b, seed=3)
    assert one == two and paired_bootstrap_interval(a, b, seed=4) != one
    t = paired_t_interval(a, b)
    assert one.high - one.low == pytest.approx(t.high - t.low, rel=0.1)


def test_mcnemar_exact_on_hand_cases():
    assert mcnemar_exact([True, False], [True, False]) == (0, 0, 1.0)  # no discordant pair
    sym = mcnemar_exact([1, 1, 0, 0, 1], [0, 0, 1, 1, 1])  # 2 vs 2 discordant: symmetric
    assert (sym.only_a, sym.only_b, sym.p_value) == (2, 2, 1.0)
    lop = mcnemar_exact([1] * 10 + [0], [0] * 10 + [1])  # 10 vs 1 of 11: 2·(1 + 11)/2^11
    assert lop.p_value == pytest.approx(2 * 12 / 2**11)
    assert mcnemar_exact([0] * 10 + [1], [1] * 10 + [0]).p_value == lop.p_value  # symmetric in a, b
    all_one_side = mcnemar_exact([1] * 6, [0] * 6)
    assert all_one_side.p_value == pytest.approx(2 / 2**6)


def test_mcnemar_matches_a_binomial_test():
    stats = pytest.importorskip("scipy.stats")
    a = [1] * 7 + [0] * 2 + [1] * 20
    b = [0] * 7 + [1] * 2 + [1] * 20
    assert mcnemar_exact(a, b).p_value == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: paired_t_interval([1.0], [0.0]), "at least 2"),
        (lambda: paired_t_interval([1.0, 2.0], [0.0]), "same length"),
        (lambda: paired_t_interval([1.0, math.nan], [0.0, 0.0]), "finite"),
        (lambda: paired_t_interval(A, B, confidence=1.0), "confidence"),
        (lambda: paired_bootstrap_interval([], []), "at least 1"),
        (lambda: paired_bootstrap_interval(A, B, resamples=0), "resamples"),
        (lambda: mcnemar_exact([True], []), "same length"),
        (lambda: t_quantile(1.0, 3), "p must be"),
        (lambda: t_cdf(0.0, 0), "df must be"),
    ],
)
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_verdict_reads_only_the_interval():
    assert verdict(PairedInterval(0.1, -0.01, 0.2, 3, 0.95, "paired t")) == "no difference"
    assert verdict(PairedInterval(0.1, 0.01, 0.2, 3, 0.95, "paired t")) == "higher"
    assert verdict(PairedInterval(-0.1, -0.2, -0.01, 3, 0.95, "paired t")) == "lower"


def test_paired_t_p_value_matches_scipy_and_agrees_with_the_interval():
    stats = pytest.importorskip("scipy.stats")
    assert paired_t_p_value(A, B) == pytest.approx(float(stats.ttest_rel(A, B).pvalue), rel=1e-9)
    # the 95 % interval excludes 0 exactly when p < 0.05
    for shift in (0.0, 0.01, 0.02, 0.03, -0.05):
        b = [x + shift for x in B]
        ci = paired_t_interval(A, b)
        assert (paired_t_p_value(A, b) < 0.05) == (not ci.low <= 0.0 <= ci.high)
    assert paired_t_p_value(A, A) == 1.0 and paired_t_p_value([1.0, 2.0], [0.0, 1.0]) == 0.5  # no spread: the sign test
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_t_p_value([1.0], [0.0])


def test_holm_is_the_step_down_bonferroni_and_keeps_the_order():
    ps = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005×4 = 0.02, 0.01×3 = 0.03, 0.03×2 = 0.06, 0.04×1 = 0.04 → monotone 0.06
    assert holm(ps) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == []
    adjusted = holm([random.Random(i).random() for i in range(20)])
    assert all(0.0 <= q <= 1.0 for q in adjusted)
    for p_raw, q in zip([random.Random(i).random() for i in range(20)], adjusted):
        assert q >= p_raw
    with pytest.raises(ValueError, match=r"\[1.5\]"):
        holm([0.1, 1.5])


def test_differences_without_spread_fall_back_to_the_sign_test():
    """Identical paired differences (or ones equal up to float noise) leave the t test without a variance: the
    verdict and p come from the exact sign test, 2 · 0.5^n, so 3 or 5 seeds that all moved by +0.5 are not
    "higher" (p 0.25, 0.0625) and 6 are (p 0.031)."""
    noisy = paired_t_interval([3.0, 3.5, 4.0], [2.5, 3.0, 3.5])  # float noise: sd ≈ 1e-16, not 0
    assert noisy.low == noisy.high == noisy.mean == pytest.approx(0.5)
    assert verdict(noisy) == "no difference"
    assert paired_t_p_value([3.0, 3.5, 4.0], [2.5, 3.0, 3.5]) == pytest.approx(0.25)
    five = [x + 0.5 for x in A]
    assert verdict(paired_t_interval(five, A)) == "no difference"
    assert paired_t_p_value(five, A) == pytest.approx(0.0625)
    six, base = [1.5] * 6, [1.0] * 6
    assert verdict(paired_t_interval(six, base)) == "higher" and verdict(paired_t_interval(base, six)) == "lower"
    assert paired_t_p_value(six, base) == pytest.approx(2 / 2**6)
    assert verdict(paired_t_interval(base, base)) == "no difference" and paired_t_p_value(base, base) == 1.0
    assert verdict(paired_bootstrap_interval(five, A, resamples=50)) == "no difference"
