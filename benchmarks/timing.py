"""Side-by-side timing for the benchmarks: cases run interleaved, so machine load hits all of them alike.

    timings = interleave({"ours": run_ours, "released": run_released}, repeats=5)
    ratio(timings, "released", "ours")   # per-repetition ratios: min / median / max

Each repetition runs every case once, in a rotated order (so no case always runs first after a pause), after
``warmup`` untimed rounds. The machine load (1-minute load average, CPU count) is read before and after, so a
report says what else was running. A line per round on stderr says how many are done and the ETA (the rounds of a
slow variant take minutes).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from lmcore.progress import Eta


def spread(values: list[float]) -> dict[str, float | list[float]]:
    """min / median / max of ``values``, with the values themselves."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": list(values)}


def machine_load() -> dict[str, float | int]:
    """1-minute load average and CPU count: a load near the CPU count means the timings shared the machine."""
    load1, _, _ = os.getloadavg()
    return {"load_avg_1min": round(load1, 2), "cpus": os.cpu_count() or 1}


def interleave(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Seconds per call of each case over ``repeats`` interleaved rounds: ``{name: spread}`` plus ``"load"``.

    Raises:
        ValueError: ``repeats`` < 1, ``warmup`` < 0 or no cases.
    """
    if repeats < 1 or warmup < 0 or not cases:
        raise ValueError(f"need repeats >= 1, warmup >= 0 and at least one case, got {repeats}, {warmup}, {cases}")
    names = list(cases)
    before = machine_load()
    eta = Eta([1.0] * (warmup + repeats))

    def round_done(index: int, started: float) -> None:
        eta.finish(index, time.perf_counter() - started)
        print(f"interleaved rounds ({warmup} warm-up): {eta.line()}", file=sys.stderr, flush=True)

    for w in range(warmup):
        started = time.perf_counter()
        for name in names:
            cases[name]()
        round_done(w, started)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        started = time.perf_counter()
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            cases[name]()
            seconds[name].append(time.perf_counter() - start)
        round_done(warmup + r, started)
    out: dict[str, dict] = {name: spread(values) for name, values in seconds.items()}
    out["load"] = {"before": before, "after": machine_load()}
    return out


def ratio(timings: dict[str, dict], numerator: str, denominator: str) -> dict[str, float | list[float]]:
    """Per-repetition ratios numerator / denominator (paired by round), as min / median / max."""
    pairs = zip(timings[numerator]["runs"], timings[denominator]["runs"])
    return spread([a / b for a, b in pairs])


def ratio_cell(r: dict, target: float | None = None, at_least: bool = True) -> str:
    """A Markdown cell ``median (min–max)`` with ``met`` / ``not met`` against an optional target."""
    text = f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"
    if target is None:
        return text
    met = r["median"] >= target if at_least else r["median"] <= target
    return f"{text}, target {'≥' if at_least else '≤'} {target:g}×: {'met' if met else 'not met'}"
