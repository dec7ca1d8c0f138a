"""Table of test results across runs: ``python -m cap_lightning.report runs [--out results.md]``.

Reads every ``test_metrics.json`` written by ``lightning fit`` (see ``cli.py``) under the given folders, groups
runs by name without the seed (dataset, prior, setting), and prints mean ± std over seeds of test accuracy and
macro-F1 as a Markdown table (also written to ``--out``; ``--csv`` for a CSV). Where ``lightning test`` on an
attacked split left ``<run>/robustness/*.json`` (``RobustnessCallback``), the table gains one accuracy-under-attack and
one attack-success-rate column per recipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from cap_lightning.adversarial.results import load_robustness, robustness_columns


def collect(folders: list[str]) -> dict[str, list[dict]]:
    """Runs grouped by their name without the ``-s<seed>`` suffix."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for folder in folders:
        for path in sorted(Path(folder).rglob("test_metrics.json")):
            record = json.loads(path.read_text())
            record["metrics"] = {**record["metrics"], **load_robustness(path.parent)}  # <run>/robustness/*.json
            groups[record["name"].rsplit("-s", 1)[0]].append(record)
    return dict(groups)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def table(groups: dict[str, list[dict]], metrics: tuple[str, ...] = ("test/acc", "test/macro_f1")) -> str:
    """Markdown table: one row per run group, mean ± std (in %) over its seeds."""
    lines = ["| run | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, records in sorted(groups.items()):
        seeds = sorted(r["name"].rsplit("-s", 1)[-1] for r in records)
        cells = [_mean_std([r["metrics"][m] for r in records if m in r["metrics"]]) for m in metrics]
        lines.append(f"| {name} | {','.join(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Table of test results across lightning fit runs")
    parser.add_argument("folders", nargs="+", help="folders searched for test_metrics.json")
    parser.add_argument("--out", help="write the Markdown table here too")
    args = parser.parse_args(argv)
    groups = collect(args.folders)
    if not groups:
        raise SystemExit(f"no test_metrics.json under {args.folders}: run `lightning fit --config ...` first")
    records = [r for rs in groups.values() for r in rs]
    text = table(groups, ("test/acc", "test/macro_f1", *robustness_columns(records)))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
