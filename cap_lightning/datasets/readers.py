"""Readers of the built-in datasets' original files, laid out as in their upstream repositories.

Each reader takes the dataset folder and returns ``(label names, raw splits)``; which reader and which files belong
to which dataset is in ``specs.py``.

Design decisions:
- **Original formats, read as published.** Nothing is converted or cached on disk; the biggest dataset (SST-2, 67k
  rows) reads in well under a second.
- **Split roles.** SST-2's ``test.tsv`` is the GLUE *dev* set and ``train.tsv``/``dev.tsv`` re-split GLUE train
  (ALPS); they become test / train / validation. BANKING77 has no validation split (``None``: carved from train).
  HWU64's DialoGLUE ``val.csv`` was drawn with replacement, so its exact duplicate rows are dropped (1,076 → 1,006).
  No other rows are added, dropped or deduplicated, so row counts match each ``SOURCE.md``; the few texts that the
  upstream files share between splits (e.g. 75 between SST-2 train and dev) are kept as published.
- ``data_dir`` may be the dataset folder or its parent: :func:`dataset_root` tries ``<data_dir>/<name>`` when the
  expected files are not directly under ``data_dir``, and checks every file before anything is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from cap_lightning.datasets.encoding import BUILTIN_HINT, decoding
from cap_lightning.datasets.labels import EMOTION_LABELS, SST2_LABELS, id_to_name
from cap_lightning.datasets.rows import RawSplits, Row
from cap_lightning.datasets.tables import check_columns, read_delimited, read_json_list, read_text

LocalReader = Callable[[Path], tuple[list[str], RawSplits]]


def read_sst2(root: Path) -> tuple[list[str], RawSplits]:
    split_files = {"train": "train", "validation": "dev", "test": "test"}
    raw = {s: read_delimited(root / f"SST-2/{f}.tsv", "sentence", "label", "\t") for s, f in split_files.items()}
    named = {s: [row._replace(label=id_to_name(row.label, SST2_LABELS)) for row in rows] for s, rows in raw.items()}
    return list(SST2_LABELS), dict(named)


def _dedupe(rows: list[Row]) -> list[Row]:
    """Drop exact (stripped text, label) duplicates, keeping the first occurrence."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        key = (str(row.text).strip(), str(row.label).strip())
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def read_banking77(root: Path) -> tuple[list[str], RawSplits]:
    base = root / "banking_data"
    train, test = (read_delimited(base / f"{s}.csv", "text", "category", ",") for s in ("train", "test"))
    return read_json_list(base / "categories.json"), {"train": train, "validation": None, "test": test}


def read_hwu64(root: Path) -> tuple[list[str], RawSplits]:
    base = root / "data/hwu"
    raw = {
        s: read_delimited(base / f"{f}.csv", "text", "category", ",")
        for s, f in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    raw["validation"] = _dedupe(raw["validation"])
    return read_json_list(base / "categories.json"), dict(raw)


def read_clinc150(root: Path) -> tuple[list[str], RawSplits]:
    path = root / "data/data_full.json"
    data = json.loads(read_text(path))
    check_columns(list(data), ("train", "val", "test"), f"{path} (top-level keys)")
    raw: RawSplits = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = [Row(text, intent, f"{path}, {key}[{i}]") for i, (text, intent) in enumerate(data[key])]
        raw[split] = [row for row in rows if row.label != "oos"]  # in-scope only; oos rows live under oos_* keys
    names = sorted({str(row.label) for row in raw["train"] or []})
    return names, raw


def _read_emotion_file(path: Path) -> list[Row]:
    rows = []
    with decoding(path, "utf-8", BUILTIN_HINT), path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if (line_no == 1 and line == "text;label_name") or not line.strip():
                continue
            text, sep, label = line.rpartition(";")
            if not sep:
                raise ValueError(f"{path}, line {line_no}: expected 'text;label_name', found no ';' in {line!r}")
            rows.append(Row(text, label, f"{path}, line {line_no}"))
    return rows


def read_emotion(root: Path) -> tuple[list[str], RawSplits]:
    base = root / "data/emotion"
    raw = {
        s: _read_emotion_file(base / f"{f}.txt")
        for s, f in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    return list(EMOTION_LABELS), dict(raw)


def dataset_root(dataset: str, files: Sequence[str], data_dir: str | Path) -> Path:
    """The folder holding ``dataset``'s expected ``files``: ``data_dir`` itself, or ``data_dir/<dataset>``."""
    base = Path(data_dir).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"data_dir for {dataset!r} does not exist or is not a folder: {base}")
    for root in (base, base / dataset):
        if all((root / rel).is_file() for rel in files):
            return root
    missing = [str(base / rel) for rel in files if not (base / rel).is_file()]
    raise FileNotFoundError(
        f"{dataset!r} files not found under data_dir {base} (nor under {base / dataset}); missing: {missing}. "
        f"Expected the original files {list(files)} (e.g. data_dir='../shared/data/{dataset}')."
    )
