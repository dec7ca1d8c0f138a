"""One page over every benchmark of ``make bench``: each target, met or not, from the JSON files in ``--out``.

    python -m benchmarks.summary --out bench/out      # writes bench/out/summary.{json,md}

Targets are read from what the benchmarks wrote, never restated here: a ``targets`` mapping of name → bool, or a
key ending in ``_met`` (with its measured value beside it where the file has one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmcore.io import atomic_write_json, atomic_write_text


def targets(report: Any, prefix: str = "") -> dict[str, bool]:
    """``{dotted name: met}`` for every target in a benchmark's JSON report (searched recursively)."""
    found: dict[str, bool] = {}
    if isinstance(report, dict):
        for key, value in report.items():
            name = f"{prefix}{key}"
            if key == "targets" and isinstance(value, dict):
                found |= {f"{prefix}{k}": bool(v) for k, v in value.items() if isinstance(v, bool)}
            elif key.endswith("_met") and isinstance(value, bool):
                found[name.removesuffix("_met")] = value
            elif isinstance(value, dict):
                found |= targets(value, f"{name}.")
    return found


def summarise(folder: Path) -> dict[str, dict[str, bool]]:
    """Targets of every ``*.json`` report in ``folder`` (this page's own file excluded), by file stem."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        if path.stem == "summary":
            continue
        found = targets(json.loads(path.read_text()))
        if found:
            out[path.stem] = found
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, bool]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out")
    args = p.parse_args(argv)
    folder = Path(args.out)
    found = summarise(folder)
    if not found:
        raise SystemExit(f"no benchmark report with targets in {folder}: run make bench first")
    lines = ["# Benchmark targets", "", "| benchmark | target | met |", "|---|---|---|"]
    for bench, items in found.items():
        lines += [f"| {bench} | {name} | {'met' if met else '**not met**'} |" for name, met in items.items()]
    n_met = sum(v for items in found.values() for v in items.values())
    n_all = sum(len(items) for items in found.values())
    lines += ["", f"{n_met} of {n_all} targets met; figures and machine load in each benchmark's own .md file."]
    atomic_write_json(folder / "summary.json", found, indent=2)
    atomic_write_text(folder / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return found


if __name__ == "__main__":
    main()
