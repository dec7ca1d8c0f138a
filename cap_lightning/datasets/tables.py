"""Reading table files into raw rows: csv, tsv, jsonl, json and parquet, by suffix.

Design decisions:
- tsv is read without quote handling, as GLUE writes it; csv with standard quoting. Both need a header row.
- json is a list of objects, or one object of equal-length column lists.
- Columns are checked before rows are built, and every error names the file (and row) together with what is present.
- Text files are read in ``encoding`` (UTF-8 by default; csv/tsv also strip a UTF-8 BOM); a byte that does not
  decode is an error naming the file, the line and ``hint`` (what to set), not a bare ``UnicodeDecodeError``.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cap_lightning.datasets.encoding import BUILTIN_HINT, DEFAULT_ENCODING, decoding
from cap_lightning.datasets.rows import Row

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def check_columns(present: Sequence[str], needed: Sequence[str], source: str) -> None:
    missing = [column for column in needed if column not in present]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; columns present: {list(present)}")


def read_delimited(
    path: Path,
    text_column: str,
    label_column: str,
    delimiter: str,
    encoding: str = DEFAULT_ENCODING,
    hint: str = BUILTIN_HINT,
) -> list[Row]:
    """csv (``,``, standard quoting) or tsv (tab, no quoting) with a header row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    opened = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    with decoding(path, encoding, hint), path.open(encoding=opened, newline="") as handle:
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


def _jsonl_records(path: Path, encoding: str, hint: str) -> list[Any]:
    records = []
    with decoding(path, encoding, hint), path.open(encoding=encoding) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {line_no}: malformed JSON ({err.msg})") from err
    return records


def read_text(path: Path, encoding: str = DEFAULT_ENCODING, hint: str = BUILTIN_HINT) -> str:
    """The whole text of ``path``; a byte that does not decode is an error naming the file and line."""
    with decoding(path, encoding, hint):
        return path.read_text(encoding=encoding)


def _json_records(path: Path, encoding: str, hint: str) -> list[Any]:
    """A JSON list of objects, or one object of equal-length column lists."""
    data = json.loads(read_text(path, encoding, hint))
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


def read_table(
    path: Path, text_column: str, label_column: str, encoding: str = DEFAULT_ENCODING, hint: str = BUILTIN_HINT
) -> list[Row]:
    """Rows of a table file, by suffix (one of :data:`SUPPORTED_SUFFIXES`, checked by the caller beforehand);
    ``encoding`` applies to the text formats (parquet stores UTF-8 itself)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, text_column, label_column, "\t" if suffix == ".tsv" else ",", encoding, hint)
    if suffix == ".parquet":
        return _parquet_rows(path, text_column, label_column)
    reader = _jsonl_records if suffix == ".jsonl" else _json_records
    records = reader(path, encoding, hint)
    return _records_to_rows(records, text_column, label_column, path)


def read_json_list(path: Path) -> list[str]:
    """A JSON list of label names (e.g. ``categories.json``)."""
    names = json.loads(read_text(path))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of label names")
    return names
