"""ETA over jobs of unequal cost: projection from a guess, corrected by measurement; skipped jobs cost nothing."""

from datetime import datetime

import pytest

from lmcore.progress import Eta, duration


def test_projection_uses_the_guess_then_the_measured_rate():
    eta = Eta([3.0, 1.0, 1.0], seconds_per_unit=40.0)
    assert eta.projected_seconds() == pytest.approx(200.0)
    eta.finish(0, seconds=150.0)  # 50 s per unit measured
    assert eta.projected_seconds() == pytest.approx(100.0)
    eta.finish(1, seconds=None)  # skipped (resumed from disk): done, no time, rate unchanged
    assert eta.projected_seconds() == pytest.approx(50.0) and eta.rate() == pytest.approx(50.0)
    assert eta.line(datetime(2026, 1, 1, 12, 0)) == "2/3 done, 2m30s elapsed, ETA 50s (~12:00)"
    long = Eta([100.0], seconds_per_unit=900.0)  # 25 h: the day is named
    assert long.line(datetime(2026, 1, 1, 12, 0)).endswith("ETA 25h00m (~13:00 Fri 02 Jan)")


def test_without_a_rate_the_eta_is_unknown_and_bad_input_is_refused():
    eta = Eta([1.0])
    assert eta.projected_seconds() is None and eta.line().endswith("ETA unknown")
    with pytest.raises(ValueError, match="costs"):
        Eta([-1.0])
    with pytest.raises(ValueError, match="seconds_per_unit"):
        Eta([1.0], 0.0)
    with pytest.raises(IndexError):
        eta.finish(3, 1.0)


def test_each_kind_uses_its_own_measured_rate():
    # the caller guessed aligned jobs cost 2 units; they really take 3x a baseline's time
    eta = Eta([1.0, 1.0, 2.0, 2.0], seconds_per_unit=10.0, kinds=["baseline", "baseline", "aligned", "aligned"])
    assert eta.projected_seconds() == pytest.approx(60.0)
    eta.finish(0, seconds=10.0)  # no aligned job measured yet: the overall rate
    assert eta.projected_seconds() == pytest.approx(10.0 + 40.0)
    eta.finish(2, seconds=60.0)  # aligned: 30 s per unit
    assert eta.rate("aligned") == pytest.approx(30.0) and eta.rate("baseline") == pytest.approx(10.0)
    assert eta.projected_seconds() == pytest.approx(10.0 + 60.0)
    with pytest.raises(ValueError, match="one kind per job"):
        Eta([1.0], kinds=["a", "b"])


def test_a_resumed_jobs_recorded_time_sets_the_rate_but_not_the_elapsed_time():
    eta = Eta([1.0, 1.0, 1.0], seconds_per_unit=10.0)  # a short timing under load at start guessed 10 s
    eta.finish(0, seconds=None, recorded=40.0)  # it really took 40 s when it ran before
    assert eta.rate() == pytest.approx(40.0) and eta.projected_seconds() == pytest.approx(80.0)
    assert eta.line(datetime(2026, 1, 1, 12, 0)).startswith("1/3 done, 0s elapsed")
    eta.finish(1, seconds=20.0, recorded=99.0)  # timed now: the timing wins over any record
    assert eta.rate() == pytest.approx(30.0) and eta.measured_seconds == pytest.approx(20.0)


@pytest.mark.parametrize("seconds,text", [(12.4, "12s"), (185, "3m05s"), (3720, "1h02m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_one_slow_job_does_not_set_the_rate_of_the_rest():
    # a grid resumed from records: the first run of a dataset also scored the held-out priors (a one-off hour),
    # the others took ~100 s each; the ETA rests on the typical job, not on the sum dominated by the one-off
    eta = Eta([1.0] * 8, seconds_per_unit=10.0, kinds=["baseline"] * 8)
    for i, seconds in enumerate([4000.0, 100.0, 110.0, 90.0, 100.0]):
        eta.finish(i, seconds=None, recorded=seconds)
    assert eta.rate("baseline") == pytest.approx(100.0)
    assert eta.projected_seconds() == pytest.approx(300.0)
