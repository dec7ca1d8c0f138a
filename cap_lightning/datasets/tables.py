"""Reading table files into raw rows: csv, tsv, jsonl, json and parquet, by suffix.

Design decisions:
- tsv is read without quote handling, as GLUE writes it; csv with standard quoting. Both need a header row.
- json is a list of objects, or one object of equal-length column lists.
- Columns are checked before rows are built, and every error names the file (and row) together with what is present.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cap_lightning.datasets.rows import Row

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def check_columns(present: Sequence[str], needed: Sequence[str], source: str) -> None:
    missing = [column for column in needed if column not in present]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; columns present: {list(present)}")


def read_delimited(path: Path, text_column: str, label_column: str, delimiter: str) -> list[Row]:
    """csv (``,``, standard quoting) or tsv (tab, no quoting) with a header row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        check_columns(reader.fieldnames or [], (text_column, label_column), str(path))
        return [
            Row(rec[text_column], rec[label_column], f"{path}, row {i} (line {reader.line_num})")
            for i, rec in enumerate(reader, start=1)
        ]


def _records_to_rows(records: Iterable[Any], text_column: str, label_column: str, source: Path) -> list[Row]:
    rows = []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise ValueError(f"{source}, row {i}: expected an object with named columns, got {type(rec).__name__}")
        check_columns(list(rec), (text_column, label_column), f"{source}, row {i}")
        rows.append(Row(rec[text_column], rec[label_column], f"{source}, row {i}"))
    return rows


def _jsonl_records(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {line_no}: malformed JSON ({err.msg})") from err


def _json_records(path: Path) -> list[Any]:
    """A JSON list of objects, or one object of equal-length column lists."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        columns = list(data)
        return [dict(zip(columns, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if isinstance(data, list):
        return data
    raise ValueError(f"{path}: expected a JSON list of objects or an object of column lists")


def _parquet_rows(path: Path, text_column: str, label_column: str) -> list[Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    check_columns(table.column_names, (text_column, label_column), str(path))
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    return [Row(t, lab, f"{path}, row {i}") for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)]


def read_table(path: Path, text_column: str, label_column: str) -> list[Row]:
    """Rows of a table file, by suffix (one of :data:`SUPPORTED_SUFFIXES`, checked by the caller beforehand)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, text_column, label_column, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _parquet_rows(path, text_column, label_column)
    records = _jsonl_records(path) if suffix == ".jsonl" else _json_records(path)
    return _records_to_rows(records, text_column, label_column, path)


def read_json_list(path: Path) -> list[str]:
    """A JSON list of label names (e.g. ``categories.json``)."""
    names = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of label names")
    return names
