"""Robustness results on disk, next to the run they belong to, for the reproduction table.

Design decisions:
- ``lightning test --ckpt_path <run>/checkpoints/best.ckpt`` on an attacked split writes
  ``<run>/robustness/<split file stem>.json`` (metrics, recipes, the split's SHA-256, the checkpoint), so the result
  sits beside that run's ``test_metrics.json`` from ``lightning fit``; re-testing on the same split overwrites it.
- :func:`load_robustness` flattens every file of a run into ``{"<recipe>/attacked_acc": ..., ...}``, the columns the
  report adds when both a clean and a robustness result exist. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from lmcore.io import atomic_write_json

COLUMNS: tuple[str, ...] = ("attacked_acc", "attack_success_rate")


def run_folder(ckpt_path: str | None, fallback: str | Path) -> Path:
    """``<run>`` for ``<run>/checkpoints/x.ckpt``, ``<dir>/x`` for another ``<dir>/x.ckpt``, else ``fallback``."""
    if not ckpt_path:
        return Path(fallback)
    ckpt = Path(ckpt_path).resolve()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent / ckpt.stem


def save_robustness(folder: str | Path, split_file: str | Path, recipes: list[str], metrics: dict, ckpt: str | None):
    """Write ``<folder>/robustness/<stem>.json`` atomically and return its path."""
    split_file = Path(split_file)
    target = Path(folder) / "robustness" / f"{split_file.stem}.json"
    record = {
        "adversarial_file": str(split_file),
        "set_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest(),
        "recipes": recipes,
        "ckpt_path": ckpt,
        "metrics": metrics,
    }
    return atomic_write_json(target, record)


def load_robustness(folder: str | Path, prefix: str = "adv/") -> dict[str, float]:
    """``{"<recipe>/<column>": value}`` from every ``<folder>/robustness/*.json`` (empty when none)."""
    out: dict[str, float] = {}
    for path in sorted((Path(folder) / "robustness").glob("*.json")):
        record = json.loads(path.read_text())
        name = "+".join(record.get("recipes") or [path.stem])
        for column in COLUMNS:
            value = record.get("metrics", {}).get(f"{prefix}{column}")
            if value is not None:
                out[f"{name}/{column}"] = value
    return out


def robustness_columns(records: Iterable[dict]) -> tuple[str, ...]:
    """The robustness metric names present in any record's ``metrics`` (for the report's extra columns)."""
    names = {m for r in records for m in r.get("metrics", {}) if m.rsplit("/", 1)[-1] in COLUMNS and "/" in m}
    return tuple(sorted(n for n in names if not n.startswith(("test/", "val/", "train/"))))
