"""Where one aligned training step spends its CPU time (torch.profiler), for the README's "matrix products" figure.

    PYTHONPATH=. python results/bench_cpu/profile_aligned_step.py [variant, default ig_m8_osd]

The step is the one `benchmarks/cap_bench.py` times (MiniLM, batch 32 × 64 Banking77 tokens, CE + alignment of the
named variant); one warm-up step, then one profiled step. Prints the share of self CPU time in `aten::mm` and
`aten::addmm` and the ten largest operators.
"""

from __future__ import annotations

import sys

from torch.profiler import ProfilerActivity, profile

from benchmarks.cap_bench import VARIANTS, _setup, _step_fns


def main(name: str) -> None:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; one of {sorted(VARIANTS)}")
    model, batch, prior, pad_id = _setup(32, 64)
    step = _step_fns(model, batch, prior, pad_id)[name]
    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm"))
    print(f"{name}: aten::mm + aten::addmm = {100 * matmul / total:.1f} % of {total / 1e6:.2f} s self CPU time")
    print(events.table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ig_m8_osd")
