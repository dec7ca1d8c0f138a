"""Progress with an ETA over a planned list of long jobs of unequal cost (grids of training runs, sweeps).

    eta = Eta([3.0, 1.0, 1.0], seconds_per_unit=40.0)   # costs in any unit; a first guess of seconds per unit
    eta.projected_seconds()                            # 200.0: the projection printed at start
    eta.finish(0, seconds=150.0)                       # measured: 50 s per unit from now on
    eta.line()                                          # "1/3 done, 2m30s elapsed, ETA 1m40s (~21:47)"

Design decisions:
- The rate (seconds per cost unit) starts at the caller's guess and is replaced by the measured rate as soon as a
  job finishes, so the ETA corrects itself; skipped jobs (resumed from disk) count as done and cost no time.
- The measured rate is the **median** of the finished jobs' own rates (seconds over cost), not their total over
  total cost: one job that also did one-off work (the first run of a grid scoring shared caches, a run of an earlier
  invocation on a loaded machine) would otherwise set the ETA of every job after it.
- Jobs may have ``kinds`` (e.g. ``baseline`` / ``aligned`` training runs) whose real cost ratio the caller can only
  guess: each kind's remaining jobs use that kind's measured rate once one of its jobs finished, else the rate
  measured over all kinds, else the guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from statistics import median


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Eta:
    """Remaining time of a list of jobs with relative ``costs``.

    Raises:
        ValueError: a cost is negative, or the guess is not positive.
    """

    def __init__(
        self, costs: Sequence[float], seconds_per_unit: float | None = None, kinds: Sequence[str] | None = None
    ) -> None:
        if any(c < 0 for c in costs):
            raise ValueError(f"costs must be >= 0, got {list(costs)}")
        if seconds_per_unit is not None and seconds_per_unit <= 0:
            raise ValueError(f"seconds_per_unit must be > 0, got {seconds_per_unit}")
        if kinds is not None and len(kinds) != len(costs):
            raise ValueError(f"kinds must give one kind per job: {len(kinds)} kinds for {len(costs)} jobs")
        self.costs = list(costs)
        self.kinds = list(kinds) if kinds is not None else [""] * len(self.costs)
        self.guess = seconds_per_unit
        self.done: set[int] = set()
        self.measured_units = 0.0
        self.measured_seconds = 0.0  # this invocation's timed jobs (the "elapsed" of ``line``)
        self._rates: list[float] = []  # seconds per unit of each timed or recorded job (the rate: their median)
        self._by_kind: dict[str, list[float]] = {}  # kind -> those of its jobs

    def rate(self, kind: str | None = None) -> float | None:
        """Seconds per cost unit (of ``kind``: its own measurement when it has one): the median over the timed or
        recorded jobs once one finished, else the guess."""
        own = self._by_kind.get(kind, []) if kind is not None else []
        if own:
            return median(own)
        if self._rates:
            return median(self._rates)
        return self.guess

    def projected_seconds(self) -> float | None:
        """Seconds for every job not done yet (None without a rate)."""
        if self.rate() is None:
            return None
        return sum(c * self.rate(k) for i, (c, k) in enumerate(zip(self.costs, self.kinds)) if i not in self.done)

    def finish(self, index: int, seconds: float | None, recorded: float | None = None) -> None:
        """Job ``index`` is done; ``seconds`` is its wall time, None when it was skipped (already on disk).
        ``recorded``: the wall time a skipped job took when it ran earlier; it informs the rate (so a resumed grid's
        ETA rests on its own finished runs, not only on a short timing taken under whatever load there was at
        start) but not this invocation's elapsed time."""
        if not 0 <= index < len(self.costs):
            raise IndexError(f"job {index} is not in 0..{len(self.costs) - 1}")
        self.done.add(index)
        timed = seconds if seconds is not None else recorded
        if timed is not None and self.costs[index] > 0:
            if seconds is not None:
                self.measured_units += self.costs[index]
                self.measured_seconds += seconds
            self._rates.append(timed / self.costs[index])
            self._by_kind.setdefault(self.kinds[index], []).append(timed / self.costs[index])

    def line(self, now: datetime | None = None) -> str:
        """``k/n done, <elapsed> elapsed, ETA <remaining> (~HH:MM)``."""
        now = now or datetime.now()
        left = self.projected_seconds()
        text = f"{len(self.done)}/{len(self.costs)} done, {duration(self.measured_seconds)} elapsed"
        if left is None:
            return text + ", ETA unknown"
        end = now + timedelta(seconds=left)
        return text + f", ETA {duration(left)} (~{end:%H:%M}{'' if end.date() == now.date() else f' {end:%a %d %b}'})"
