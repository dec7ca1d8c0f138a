"""Paired comparisons of two methods: over seeds (paired t, paired bootstrap) and over questions (exact McNemar).

Shared by ``cap_lightning`` (a method vs the CE-only baseline, seeds paired; docs/cap.md §3.4) and ``steering``
(steered vs base, questions paired; docs/grains.md). Pure Python on floats and bools; no SciPy (not a runtime
dependency): the Student-t quantile comes from the regularised incomplete beta function (Lentz's continued
fraction) inverted by bisection, equal to ``scipy.stats.t.ppf`` to 1e-9 (tests).

Design decisions:
- Every interval is for the mean of the paired differences ``a_i − b_i`` (``a`` the method, ``b`` the reference),
  and says which test made it (``PairedInterval.test``).
- Paired t: ``d̄ ± t_{1−α/2, n−1} · s_d / √n``; needs n ≥ 2. Identical inputs give the point interval [0, 0].
- Paired bootstrap: percentile interval of the mean difference over ``resamples`` resamples of the pairs (with
  replacement), drawn from a seeded ``random.Random``, so the same inputs and seed give the same interval.
- McNemar (exact): over the discordant pairs only (``a`` right and ``b`` wrong: n₁₀; the reverse: n₀₁), two-sided
  binomial test of n₁₀ ~ Bin(n₁₀ + n₀₁, ½): ``p = min(1, 2 · P(X ≤ min(n₁₀, n₀₁)))``; p = 1 without discordant pairs.
- ``verdict`` says ``no difference`` whenever the interval contains 0 (an interval, not a p-value threshold).
- Several comparisons read together (every prior against the baseline, on one dataset) are a family: ``holm``
  adjusts their p-values (Holm–Bonferroni step-down, family-wise error ≤ α with no assumption on their dependence),
  so a reader can tell which differences survive the number of comparisons made.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import NamedTuple

_EPS = 1e-15
_TINY = 1e-300


class PairedInterval(NamedTuple):
    """Mean of the paired differences ``a − b`` and its confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    test: str  # "paired t" | "paired bootstrap"


class McNemar(NamedTuple):
    """Exact McNemar test of paired binary outcomes: discordant counts and the two-sided p-value."""

    only_a: int  # a right, b wrong
    only_b: int  # b right, a wrong
    p_value: float


# ------------------------------------------------------------------------------------------- validation
def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:  # also rejects nan
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``a_i − b_i``; the two sequences must have the same length and finite values."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    out = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    if not all(math.isfinite(d) for d in out):
        raise ValueError("paired samples must be finite (a NaN or inf was given)")
    return out


# ------------------------------------------------------------------------------------------- Student t
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)``, the regularised incomplete beta function, for ``a, b > 0`` and ``0 ≤ x ≤ 1``."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student-t cumulative distribution function with ``df > 0`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------- intervals
def paired_t_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedInterval:
    """Paired t confidence interval of the mean of ``a − b`` (e.g. a method vs the baseline, seeds paired)."""
    confidence = _check_confidence(confidence)
    d = paired_differences(a, b)
    if len(d) < 2:
        raise ValueError(f"a paired t interval needs at least 2 pairs, got {len(d)}")
    mean = statistics.fmean(d)
    half = t_quantile(0.5 + confidence / 2.0, len(d) - 1) * spread(d) / math.sqrt(len(d))
    return PairedInterval(mean, mean - half, mean + half, len(d), confidence, "paired t")


def paired_bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedInterval:
    """Percentile bootstrap interval of the mean of ``a − b``, resampling pairs (seeded, deterministic).

    For binary outcomes over questions (1.0 right, 0.0 wrong) it is the interval of the accuracy difference.
    """
    confidence = _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    d = paired_differences(a, b)
    if not d:
        raise ValueError("a paired bootstrap needs at least 1 pair, got 0")
    n = len(d)
    if spread(d) == 0.0:  # every resample has the same mean: a point interval, read by ``verdict``'s sign test
        mean = statistics.fmean(d)
        return PairedInterval(mean, mean, mean, n, confidence, "paired bootstrap")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(d, k=n)) for _ in range(resamples))
    alpha = (1.0 - confidence) / 2.0
    low = means[max(0, math.floor(alpha * resamples))]
    high = means[min(resamples - 1, math.ceil((1.0 - alpha) * resamples) - 1)]
    return PairedInterval(statistics.fmean(d), low, high, n, confidence, "paired bootstrap")


def paired_t_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t test of mean(``a − b``) = 0 (n − 1 degrees of freedom; needs n ≥ 2).

    Differences without spread (``spread`` 0) leave the t test without a variance: p = 1 when they are all 0, else
    the exact sign test's ``sign_test_p(n)`` (every difference on one side).
    """
    d = paired_differences(a, b)
    if len(d) < 2:
        raise ValueError(f"a paired t test needs at least 2 pairs, got {len(d)}")
    mean, sd = statistics.fmean(d), spread(d)
    if sd == 0.0:
        return 1.0 if mean == 0.0 else sign_test_p(len(d))
    t = mean / (sd / math.sqrt(len(d)))
    return min(1.0, 2.0 * t_cdf(-abs(t), len(d) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest p times (m − i), made monotone.

    Raises:
        ValueError: a p-value outside [0, 1] (or NaN).
    """
    ps = [float(p) for p in p_values]
    bad = [p for p in ps if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"p-values must be in [0, 1], got {bad}")
    m = len(ps)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=ps.__getitem__)):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


# ------------------------------------------------------------------------------------------- McNemar
def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test of paired binary outcomes (e.g. steered vs base, right/wrong per question)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes must have the same length, got {len(a)} and {len(b)}")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b, strict=True))
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 1.0)
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return McNemar(only_a, only_b, min(1.0, 2.0 * tail))


# ------------------------------------------------------------------------------------------- verdict
def verdict(interval: PairedInterval) -> str:
    """``no difference`` when the interval contains 0, else ``higher`` (a > b) or ``lower`` (a < b).

    A zero-width interval off 0 (every paired difference equal: no spread to estimate the error from) is read by
    the exact sign test instead: ``higher`` / ``lower`` only if ``sign_test_p(n)`` < 1 − confidence (n ≥ 6 at 95 %).
    """
    if interval.low <= 0.0 <= interval.high:
        return "no difference"
    if interval.low == interval.high and sign_test_p(interval.n) >= 1.0 - interval.confidence:
        return "no difference"
    return "higher" if interval.low > 0.0 else "lower"


def sign_test_p(n: int) -> float:
    """Two-sided exact sign-test p-value when all ``n`` nonzero paired differences have one sign: 2 · 0.5^n."""
    return min(1.0, 2.0 * 0.5**n)


def spread(d: Sequence[float]) -> float:
    """Sample standard deviation of the paired differences, 0 when they are equal up to float round-off (a
    difference of rounded accuracies carries ~1e-16 of noise, which would otherwise pass for a real spread)."""
    scale = max(1.0, max(abs(x) for x in d))
    return 0.0 if max(d) - min(d) <= 1e-9 * scale else statistics.stdev(d)
