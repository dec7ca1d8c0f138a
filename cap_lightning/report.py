"""Table of test results across runs: ``python -m cap_lightning.report runs [--out results.md]``.

Reads every ``test_metrics.json`` written by ``lightning fit`` (see ``cli.py``) under the given folders, groups
runs by name without the seed (dataset, prior, setting), and prints mean ± std over seeds of test accuracy and
macro-F1 as a Markdown table (also written to ``--out``; ``--csv`` for a CSV). Where ``lightning test`` on an
attacked split left ``<run>/robustness/*.json`` (``RobustnessCallback``), the table gains one accuracy-under-attack and
one attack-success-rate column per recipe.

``--baseline`` adds a second table (docs/cap.md §3.4, "Paired comparisons"): per run group and metric, mean ± std
over seeds and the mean paired difference to the CE-only baseline of the same dataset and setting
(``<dataset>-baseline-<setting>``, the name ``naming.py`` gives a ``prior_weight: 0`` run), over the seeds both
ran, with a 95 % paired-t interval (``lmcore.statistics``) and ``no difference`` when it contains 0. Values are in
% (× 100) as in the first table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from cap_lightning.adversarial.results import load_robustness, robustness_columns
from lmcore.statistics import paired_t_interval, verdict

#: metrics of the paired table, each shown when some run logged it
PAIRED_METRICS = (
    "test/acc",
    "test/macro_f1",
    "test/comp_norm_aopc",
    "test/suff_norm_aopc",
    "test/p_pred",
    "test/heldout_spearman",
)


def collect(folders: list[str]) -> dict[str, list[dict]]:
    """Runs grouped by their name without the ``-s<seed>`` suffix."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for folder in folders:
        for path in sorted(Path(folder).rglob("test_metrics.json")):
            record = json.loads(path.read_text())
            record["metrics"] = {**record["metrics"], **load_robustness(path.parent)}  # <run>/robustness/*.json
            groups[record["name"].rsplit("-s", 1)[0]].append(record)
    return dict(groups)


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """``m ± s`` (× scale) over seeds; one value alone; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{scale * values[0]:.2f}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


def table(groups: dict[str, list[dict]], metrics: tuple[str, ...] = ("test/acc", "test/macro_f1")) -> str:
    """Markdown table: one row per run group, mean ± std (in %) over its seeds."""
    lines = ["| run | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, records in sorted(groups.items()):
        seeds = sorted(r["name"].rsplit("-s", 1)[-1] for r in records)
        cells = [mean_std([r["metrics"][m] for r in records if m in r["metrics"]]) for m in metrics]
        lines.append(f"| {name} | {','.join(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_of(record: dict) -> str:
    """The seed of a run, from its name's ``-s<seed>`` suffix."""
    return record["name"].rsplit("-s", 1)[-1]


def baseline_of(group: str) -> str:
    """The baseline group of a run group ``<dataset>-<prior…>-<setting>``: ``<dataset>-baseline-<setting>``."""
    parts = group.split("-")
    if len(parts) < 3:
        raise ValueError(f"run group {group!r} is not <dataset>-<prior>-<setting>")
    return f"{parts[0]}-baseline-{parts[-1]}"


def paired_cell(records: list[dict], baseline: list[dict], metric: str, scale: float = 100.0) -> str:
    """``Δ [low, high] verdict (n)``: the paired difference of ``metric`` to the baseline over the shared seeds,
    with its 95 % paired-t interval; ``Δ (n=1)`` for one shared seed; ``–`` for none."""
    mine = {seed_of(r): r["metrics"][metric] for r in records if metric in r["metrics"]}
    theirs = {seed_of(r): r["metrics"][metric] for r in baseline if metric in r["metrics"]}
    return paired_difference(mine, theirs, scale)


def paired_difference(mine: dict, theirs: dict, scale: float = 100.0, show_n: bool = True) -> str:
    """``Δ [low, high] verdict (n)`` of ``mine − theirs`` (× scale) over the seeds both have, 95 % paired t;
    ``Δ (n=1)`` for one shared seed; ``–`` for none."""
    seeds = sorted(mine.keys() & theirs.keys())
    if not seeds:
        return "–"
    a, b = [scale * mine[s] for s in seeds], [scale * theirs[s] for s in seeds]
    if len(seeds) == 1:
        return f"{a[0] - b[0]:+.2f} (n=1)"
    ci = paired_t_interval(a, b)
    return f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] {verdict(ci)}" + (f" (n={ci.n})" if show_n else "")


def paired_table(groups: dict[str, list[dict]], metrics: tuple[str, ...] = PAIRED_METRICS) -> str:
    """Markdown table: per run group and metric, mean ± std over seeds and the paired difference to its baseline."""
    shown = [m for m in metrics if any(m in r["metrics"] for rs in groups.values() for r in rs)]
    header = ["run", "seeds"] + [c for m in shown for c in (m, f"Δ {m} vs baseline")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, records in sorted(groups.items()):
        base = groups.get(baseline_of(name)) if name.count("-") >= 2 else None
        cells = [",".join(sorted(seed_of(r) for r in records))]
        for m in shown:
            cells.append(mean_std([r["metrics"][m] for r in records if m in r["metrics"]]))
            is_base = base is records
            cells.append("baseline" if is_base else "–" if base is None else paired_cell(records, base, m))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "\nΔ: mean paired difference (× 100) to `<dataset>-baseline-<setting>` over the seeds both ran, with a 95 % "
        "paired-t interval (n − 1 degrees of freedom); `no difference` when the interval contains 0."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Table of test results across lightning fit runs")
    parser.add_argument("folders", nargs="+", help="folders searched for test_metrics.json")
    parser.add_argument("--out", help="write the Markdown table here too")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="add mean ± std and the paired difference to the baseline with a 95%% CI",
    )
    args = parser.parse_args(argv)
    groups = collect(args.folders)
    if not groups:
        raise SystemExit(f"no test_metrics.json under {args.folders}: run `lightning fit --config ...` first")
    records = [r for rs in groups.values() for r in rs]
    text = table(groups, ("test/acc", "test/macro_f1", *robustness_columns(records)))
    if args.baseline:
        text += "\n\n" + paired_table(groups)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
