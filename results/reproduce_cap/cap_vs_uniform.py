"""CAP alone − uniform control, paired over seeds, from the report's results.csv: the comparison of the teacher's
content free of the few-shot sample's label information (the report's header names it; its tables do not compute it).

    python results/reproduce_cap/cap_vs_uniform.py [results/reproduce_cap/results.csv]

Outside the report's Holm family (a follow-up to the planned comparisons, unadjusted). The uniform control runs at
the Hybrid's λ and CAP alone at its own: the two match only where the two λ are equal, and the line says so.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from lmcore.statistics import paired_t_interval, paired_t_p_value, verdict

METRICS = {"test/acc": "test accuracy", "test/heldout_spearman_cap": "held-out ρ(IG, CAP prior)"}


def main(path: Path) -> None:
    runs: dict[tuple[str, str], dict[int, dict[str, str]]] = defaultdict(dict)
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            runs[row["dataset"], row["method"]][int(row["seed"])] = row
    for dataset in sorted({d for d, _ in runs}):
        cap, uniform = runs.get((dataset, "cap"), {}), runs.get((dataset, "uniform"), {})
        seeds = sorted(set(cap) & set(uniform))
        if not seeds:
            print(f"{dataset}: no seed has both CAP alone and the uniform control")
            continue
        lams = {float(cap[s]["prior_weight"]) for s in seeds}, {float(uniform[s]["prior_weight"]) for s in seeds}
        matched = "λ matched" if lams[0] == lams[1] else f"λ NOT matched (CAP {lams[0]}, uniform {lams[1]})"
        for key, name in METRICS.items():
            a = [100 * float(cap[s][key]) for s in seeds]
            b = [100 * float(uniform[s][key]) for s in seeds]
            iv = paired_t_interval(a, b)
            print(f"{dataset}, seeds {seeds}, {matched}: CAP − uniform, {name}: {iv.mean:+.2f} "
                  f"[{iv.low:+.2f}, {iv.high:+.2f}] {verdict(iv)}, p {paired_t_p_value(a, b):.3g}")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/reproduce_cap/results.csv"))
