"""Labelled text-classification splits from the datasets' original files, custom local files or the HF hub.

:func:`load_splits` is the single entry point; it returns a :class:`LabelledSplits` of plain
:class:`~cap_lightning.splits.TextExample` lists, ready for a data module, a prior cache or a few-shot draw.

Design decisions:

- **Original formats, read as published.** ``data_dir`` points at a folder holding a dataset's original files, laid
  out as in its upstream repository (``../shared/data/<name>`` on the project machine; see each folder's
  ``SOURCE.md``). Passing the parent folder (``../shared/data``) also works: ``<data_dir>/<name>`` is tried when the
  expected files are not directly under ``data_dir``. Nothing is converted or cached on disk; the biggest dataset
  (SST-2, 67k rows) reads in well under a second.
- **Label ids are fixed per dataset and documented**, so runs, caches and checkpoints agree:

  ============  ============================================================================================
  sst2          ``negative, positive`` (GLUE ids 0/1)
  banking77     index in ``banking_data/categories.json`` (the HF ``PolyAI/banking77`` ClassLabel order)
  hwu64         index in ``data/hwu/categories.json`` (alphabetical)
  clinc150      ``sorted()`` of the 150 in-scope intents; the ``oos`` rows (``oos_*`` keys) are dropped
  emotion       ``sadness, joy, love, anger, fear, surprise`` (the HF ``dair-ai/emotion`` ClassLabel order)
  ============  ============================================================================================

- **Split roles.** SST-2's ``test.tsv`` is the GLUE *dev* set and ``train.tsv``/``dev.tsv`` re-split GLUE train
  (ALPS); they become test / train / validation. BANKING77 has no validation split: it is carved from train with
  :func:`~cap_lightning.splits.carve_validation` (seeded, stratified). HWU64's DialoGLUE ``val.csv`` was drawn with
  replacement, so its exact duplicate rows are dropped (1,076 → 1,006). No other rows are added, dropped or
  deduplicated, so row counts match each ``SOURCE.md``; the few texts that the upstream files share between splits
  (e.g. 75 between SST-2 train and dev) are kept as published.
- **Texts are stripped**; an empty or whitespace-only text is an error naming the file and row, never silently
  dropped.
- **Fail fast.** Names, paths, suffixes and columns are checked before any large file is parsed, and every error
  names the bad value together with what is allowed.
- **Custom data** (``dataset="custom"``) comes from csv / tsv / jsonl / json / parquet files (chosen by suffix; tsv is
  read without quote handling, as GLUE writes it) or from any hub dataset via ``hub_id``. Labels may be names or
  integer ids; see :func:`load_splits` for how ``label_names`` is derived.
- **Hub loading** (``data_dir=None``) uses ``datasets.load_dataset`` with the standard hub ids and maps each one onto
  the same label order as the local files, so the two paths are interchangeable. Where the hub copy has no validation
  split one is carved from train; SST-2's hub ``validation`` (GLUE dev) is used as test, as locally.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cap_lightning.splits import TextExample, carve_validation

__all__ = ["DATASETS", "EMOTION_LABELS", "SST2_LABELS", "SUPPORTED_SUFFIXES", "LabelledSplits", "load_splits"]

DATASETS: tuple[str, ...] = ("sst2", "banking77", "hwu64", "clinc150", "emotion")
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".json", ".parquet")

SST2_LABELS: tuple[str, ...] = ("negative", "positive")
EMOTION_LABELS: tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")

_EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    "sst2": ("SST-2/train.tsv", "SST-2/dev.tsv", "SST-2/test.tsv"),
    "banking77": ("banking_data/train.csv", "banking_data/test.csv", "banking_data/categories.json"),
    "hwu64": ("data/hwu/train.csv", "data/hwu/val.csv", "data/hwu/test.csv", "data/hwu/categories.json"),
    "clinc150": ("data/data_full.json",),
    "emotion": ("data/emotion/train.txt", "data/emotion/val.txt", "data/emotion/test.txt"),
}


@dataclass(repr=False)
class LabelledSplits:
    """Train / validation / test rows of one dataset plus its label names.

    Attributes:
        name: Dataset name (one of :data:`DATASETS`, or ``"custom"``).
        label_names: Label names; the index is the label id used in every :class:`TextExample`.
        train: Training rows.
        validation: Validation rows (carved from train where the dataset has none).
        test: Test rows.
    """

    name: str
    label_names: list[str]
    train: list[TextExample]
    validation: list[TextExample]
    test: list[TextExample]

    def __post_init__(self) -> None:
        for split, rows in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            bad = next((ex.label for ex in rows if not 0 <= ex.label < len(self.label_names)), None)
            if bad is not None:
                raise ValueError(f"{self.name} {split}: label id {bad} outside 0..{len(self.label_names) - 1}")

    @property
    def num_labels(self) -> int:
        """Number of classes (``len(label_names)``)."""
        return len(self.label_names)

    def __repr__(self) -> str:
        return (
            f"LabelledSplits(name={self.name!r}, num_labels={self.num_labels}, train={len(self.train)}, "
            f"validation={len(self.validation)}, test={len(self.test)})"
        )


class _Row(NamedTuple):
    """A row before label encoding: raw text, raw label and where it came from (for error messages)."""

    text: Any
    label: Any
    where: str


_RawSplits = dict[str, list[_Row] | None]  # "train" / "validation" / "test" -> rows; validation None = carve it


# --------------------------------------------------------------------------------------------------------------------
# labels and examples


def _preview(values: Sequence[object], limit: int = 12) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} labels)"


def _as_int(value: object) -> int | None:
    """``value`` as a non-negative int if it is one (or a string of digits), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        return int(value)
    return None


def _id_to_name(label: object, names: Sequence[str]) -> object:
    """``names[label]`` for an in-range integer id; anything else is returned unchanged."""
    as_int = _as_int(label)
    return names[as_int] if as_int is not None and as_int < len(names) else label


class _LabelEncoder:
    """Maps raw labels to ids: by name first, then (if ``accept_ids``) as an integer id in range."""

    def __init__(self, names: Sequence[str], *, accept_ids: bool) -> None:
        self.names = [str(name) for name in names]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"label_names must be unique, got {_preview(self.names)}")
        self._ids = {name: i for i, name in enumerate(self.names)}
        self.accept_ids = accept_ids

    def encode(self, raw: object, where: str) -> int:
        label_id = self._ids.get(str(raw).strip())
        if label_id is None and self.accept_ids:
            as_int = _as_int(raw)
            label_id = as_int if as_int is not None and as_int < len(self.names) else None
        if label_id is None:
            allowed = "a name or an integer id" if self.accept_ids else "a name"
            raise ValueError(
                f"{where}: label {raw!r} is not in label_names; expected {allowed} from {_preview(self.names)}"
            )
        return label_id


def _default_encoder(train_labels: Sequence[object], label_names: Sequence[str] | None) -> _LabelEncoder:
    """Encoder for custom data: ``label_names`` if given; else int ids kept as ids, or sorted unique names."""
    if label_names is not None:
        return _LabelEncoder(label_names, accept_ids=True)
    ids = [i for i in map(_as_int, train_labels) if i is not None]
    if ids and len(ids) == len(train_labels):
        return _LabelEncoder([str(i) for i in range(max(ids) + 1)], accept_ids=True)
    return _LabelEncoder(sorted({str(label).strip() for label in train_labels}), accept_ids=False)


def _clean_text(raw: object, where: str) -> str:
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise ValueError(f"{where}: empty or whitespace-only text ({raw!r})")
    return text


def _encode(rows: Iterable[_Row], encoder: _LabelEncoder) -> list[TextExample]:
    return [TextExample(_clean_text(r.text, r.where), encoder.encode(r.label, r.where)) for r in rows]


def _assemble(
    name: str,
    encoder: _LabelEncoder,
    raw: _RawSplits,
    validation_fraction: float,
    seed: int,
) -> LabelledSplits:
    """Encode raw ``train`` / ``validation`` / ``test`` rows; carve validation from train when it is ``None``."""
    train = _encode(raw["train"] or [], encoder)
    test = _encode(raw["test"] or [], encoder)
    empty = [split for split, rows in (("train", train), ("test", test)) if not rows]
    if empty:
        raise ValueError(f"{name}: no rows in the {' and '.join(empty)} split(s)")
    if raw["validation"] is None:
        train, validation = carve_validation(train, validation_fraction, seed)
    else:
        validation = _encode(raw["validation"], encoder)
    return LabelledSplits(name, list(encoder.names), train, validation, test)


# --------------------------------------------------------------------------------------------------------------------
# file readers


def _check_columns(present: Sequence[str], needed: Sequence[str], source: str) -> None:
    missing = [column for column in needed if column not in present]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; columns present: {list(present)}")


def _read_delimited(path: Path, text_column: str, label_column: str, delimiter: str) -> list[_Row]:
    """csv (``,``, standard quoting) or tsv (tab, no quoting) with a header row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        _check_columns(reader.fieldnames or [], (text_column, label_column), str(path))
        return [
            _Row(rec[text_column], rec[label_column], f"{path}, row {i} (line {reader.line_num})")
            for i, rec in enumerate(reader, start=1)
        ]


def _records_to_rows(records: Iterable[Any], text_column: str, label_column: str, source: Path) -> list[_Row]:
    rows = []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise ValueError(f"{source}, row {i}: expected an object with named columns, got {type(rec).__name__}")
        _check_columns(list(rec), (text_column, label_column), f"{source}, row {i}")
        rows.append(_Row(rec[text_column], rec[label_column], f"{source}, row {i}"))
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


def _parquet_rows(path: Path, text_column: str, label_column: str) -> list[_Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _check_columns(table.column_names, (text_column, label_column), str(path))
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    return [_Row(t, lab, f"{path}, row {i}") for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)]


def _read_table(path: Path, text_column: str, label_column: str) -> list[_Row]:
    """Rows of a custom file, by suffix (checked by :func:`_check_custom_file` beforehand)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, text_column, label_column, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _parquet_rows(path, text_column, label_column)
    records = _jsonl_records(path) if suffix == ".jsonl" else _json_records(path)
    return _records_to_rows(records, text_column, label_column, path)


def _read_json_list(path: Path) -> list[str]:
    names = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of label names")
    return names


# --------------------------------------------------------------------------------------------------------------------
# built-in datasets, local files

_LocalReader = Callable[[Path], tuple[list[str], "_RawSplits"]]


def _read_sst2(root: Path) -> tuple[list[str], _RawSplits]:
    split_files = {"train": "train", "validation": "dev", "test": "test"}
    raw = {s: _read_delimited(root / f"SST-2/{f}.tsv", "sentence", "label", "\t") for s, f in split_files.items()}
    named = {s: [row._replace(label=_id_to_name(row.label, SST2_LABELS)) for row in rows] for s, rows in raw.items()}
    return list(SST2_LABELS), dict(named)


def _dedupe(rows: list[_Row]) -> list[_Row]:
    """Drop exact (stripped text, label) duplicates, keeping the first occurrence."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        key = (str(row.text).strip(), str(row.label).strip())
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _read_banking77(root: Path) -> tuple[list[str], _RawSplits]:
    base = root / "banking_data"
    train, test = (_read_delimited(base / f"{s}.csv", "text", "category", ",") for s in ("train", "test"))
    return _read_json_list(base / "categories.json"), {"train": train, "validation": None, "test": test}


def _read_hwu64(root: Path) -> tuple[list[str], _RawSplits]:
    base = root / "data/hwu"
    raw = {
        s: _read_delimited(base / f"{f}.csv", "text", "category", ",")
        for s, f in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    raw["validation"] = _dedupe(raw["validation"])
    return _read_json_list(base / "categories.json"), dict(raw)


def _read_clinc150(root: Path) -> tuple[list[str], _RawSplits]:
    path = root / "data/data_full.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    _check_columns(list(data), ("train", "val", "test"), f"{path} (top-level keys)")
    raw: _RawSplits = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = [_Row(text, intent, f"{path}, {key}[{i}]") for i, (text, intent) in enumerate(data[key])]
        raw[split] = [row for row in rows if row.label != "oos"]  # in-scope only; oos rows live under oos_* keys
    names = sorted({str(row.label) for row in raw["train"] or []})
    return names, raw


def _read_emotion_file(path: Path) -> list[_Row]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if (line_no == 1 and line == "text;label_name") or not line.strip():
                continue
            text, sep, label = line.rpartition(";")
            if not sep:
                raise ValueError(f"{path}, line {line_no}: expected 'text;label_name', found no ';' in {line!r}")
            rows.append(_Row(text, label, f"{path}, line {line_no}"))
    return rows


def _read_emotion(root: Path) -> tuple[list[str], _RawSplits]:
    base = root / "data/emotion"
    raw = {
        s: _read_emotion_file(base / f"{f}.txt")
        for s, f in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    return list(EMOTION_LABELS), dict(raw)


_LOCAL_READERS: dict[str, _LocalReader] = {
    "sst2": _read_sst2,
    "banking77": _read_banking77,
    "hwu64": _read_hwu64,
    "clinc150": _read_clinc150,
    "emotion": _read_emotion,
}


def _dataset_root(dataset: str, data_dir: str | Path) -> Path:
    """The folder holding ``dataset``'s expected files: ``data_dir`` itself, or ``data_dir/<dataset>``."""
    base = Path(data_dir).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"data_dir for {dataset!r} does not exist or is not a folder: {base}")
    expected = _EXPECTED_FILES[dataset]
    for root in (base, base / dataset):
        if all((root / rel).is_file() for rel in expected):
            return root
    missing = [str(base / rel) for rel in expected if not (base / rel).is_file()]
    raise FileNotFoundError(
        f"{dataset!r} files not found under data_dir {base} (nor under {base / dataset}); missing: {missing}. "
        f"Expected the original files {list(expected)} (e.g. data_dir='../shared/data/{dataset}')."
    )


def _load_local(dataset: str, data_dir: str | Path, validation_fraction: float, seed: int) -> LabelledSplits:
    root = _dataset_root(dataset, data_dir)
    label_names, raw = _LOCAL_READERS[dataset](root)
    return _assemble(dataset, _LabelEncoder(label_names, accept_ids=False), raw, validation_fraction, seed)


# --------------------------------------------------------------------------------------------------------------------
# hub


@dataclass(frozen=True)
class _HubSpec:
    """How a built-in dataset maps onto a hub copy."""

    hub_id: str
    config: str | None
    text_column: str
    label_column: str
    validation_split: str | None
    test_split: str
    label_names: tuple[str, ...] | None = None  # fixed target order; None = from the hub's names
    sort_names: bool = False  # target order = sorted(hub names) instead of the hub's order
    names_config: str | None = None  # label names live in another config (rows with id, name)
    drop_labels: tuple[str, ...] = ()


_HUB_SPECS: dict[str, _HubSpec] = {
    "sst2": _HubSpec("stanfordnlp/sst2", None, "sentence", "label", None, "validation", label_names=SST2_LABELS),
    "banking77": _HubSpec("PolyAI/banking77", None, "text", "label", None, "test"),
    "hwu64": _HubSpec(
        "AutoIntent/hwu64", None, "utterance", "label", None, "test", sort_names=True, names_config="intents"
    ),
    "clinc150": _HubSpec(
        "clinc/clinc_oos", "plus", "text", "intent", "validation", "test", sort_names=True, drop_labels=("oos",)
    ),
    "emotion": _HubSpec("dair-ai/emotion", "split", "text", "label", "validation", "test", label_names=EMOTION_LABELS),
}


def _hub_split(hub_id: str, config: str | None, split: str) -> Any:
    import datasets

    return datasets.load_dataset(hub_id, config, split=split)


def _class_label_names(ds: Any, label_column: str) -> list[str] | None:
    feature = ds.features.get(label_column)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _hub_rows(ds: Any, source: str, text_column: str, label_column: str, id_names: Sequence[str] | None) -> list[_Row]:
    """Rows of a hub split; integer labels become names when ``id_names`` is given."""
    _check_columns(ds.column_names, (text_column, label_column), source)
    texts, labels = ds[text_column], ds[label_column]
    if id_names is not None:
        labels = [_id_to_name(lab, id_names) for lab in labels]
    return [_Row(t, lab, f"{source}, row {i}") for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)]


def _hub_names_from_config(spec: _HubSpec) -> list[str]:
    ds = _hub_split(spec.hub_id, spec.names_config, str(spec.names_config))
    by_id = dict(zip(ds["id"], ds["name"], strict=True))
    return [by_id[i] for i in sorted(by_id)]


def _load_builtin_hub(dataset: str, validation_fraction: float, seed: int) -> LabelledSplits:
    spec = _HUB_SPECS[dataset]
    splits = {"train": "train", "validation": spec.validation_split, "test": spec.test_split}
    loaded = {role: _hub_split(spec.hub_id, spec.config, name) for role, name in splits.items() if name is not None}
    if spec.label_names is not None:
        hub_names: list[str] | None = list(spec.label_names)
    elif spec.names_config is not None:
        hub_names = _hub_names_from_config(spec)
    else:
        hub_names = _class_label_names(loaded["train"], spec.label_column)
    if hub_names is None:
        raise ValueError(f"{spec.hub_id}: column {spec.label_column!r} carries no label names (ClassLabel expected)")
    target = [n for n in (sorted(hub_names) if spec.sort_names else hub_names) if n not in spec.drop_labels]
    raw: _RawSplits = {"validation": None}
    for role, ds in loaded.items():
        rows = _hub_rows(ds, f"{spec.hub_id}[{splits[role]}]", spec.text_column, spec.label_column, hub_names)
        raw[role] = [r for r in rows if r.label not in spec.drop_labels]
    return _assemble(dataset, _LabelEncoder(target, accept_ids=False), raw, validation_fraction, seed)


def _load_custom_hub(
    hub_id: str,
    hub_config: str | None,
    splits: dict[str, str | None],
    text_column: str,
    label_column: str,
    label_names: list[str] | None,
    validation_fraction: float,
    seed: int,
) -> LabelledSplits:
    loaded = {role: _hub_split(hub_id, hub_config, name) for role, name in splits.items() if name is not None}
    id_names = _class_label_names(loaded["train"], label_column)
    raw: _RawSplits = {"validation": None}
    for role, ds in loaded.items():
        raw[role] = _hub_rows(ds, f"{hub_id}[{splits[role]}]", text_column, label_column, id_names)
    names = label_names if label_names is not None else id_names
    encoder = _default_encoder([r.label for r in raw["train"] or []], names)
    return _assemble("custom", encoder, raw, validation_fraction, seed)


# --------------------------------------------------------------------------------------------------------------------
# custom local files


def _check_custom_file(name: str, file: str | Path, data_dir: str | Path | None) -> Path:
    """Resolve a custom file (relative paths are taken from ``data_dir`` when given) and check suffix and existence."""
    path = Path(file).expanduser()
    if data_dir is not None and not path.is_absolute():
        path = Path(data_dir).expanduser() / path
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"{name}={str(file)!r}: unsupported file suffix {path.suffix!r}; supported: {list(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found: {path}")
    return path


def _load_custom_files(
    files: dict[str, str | None],
    data_dir: str | Path | None,
    text_column: str,
    label_column: str,
    label_names: list[str] | None,
    validation_fraction: float,
    seed: int,
) -> LabelledSplits:
    if files["train"] is None or files["test"] is None:
        raise ValueError(
            "dataset='custom' needs train_file and test_file (validation_file is optional: it is carved from train), "
            "or hub_id for a hub dataset"
        )
    paths = {role: _check_custom_file(f"{role}_file", f, data_dir) for role, f in files.items() if f is not None}
    raw: _RawSplits = {"validation": None}
    raw.update({role: _read_table(path, text_column, label_column) for role, path in paths.items()})
    encoder = _default_encoder([r.label for r in raw["train"] or []], label_names)
    return _assemble("custom", encoder, raw, validation_fraction, seed)


# --------------------------------------------------------------------------------------------------------------------
# entry point


def _check_arguments(dataset: str, validation_fraction: float, custom_args: dict[str, object]) -> None:
    allowed = (*DATASETS, "custom")
    if dataset not in allowed:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(allowed)}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be strictly between 0 and 1, got {validation_fraction!r}")
    given = [name for name, value in custom_args.items() if value is not None]
    if dataset != "custom" and given:
        raise ValueError(f"{given} only apply to dataset='custom', not to dataset={dataset!r}")
    if dataset == "custom" and custom_args["hub_id"] is not None and custom_args["train_file"] is not None:
        raise ValueError("dataset='custom': give either hub_id or train_file/test_file, not both")


def load_splits(
    dataset: str = "sst2",
    data_dir: str | Path | None = None,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
    hub_id: str | None = None,
    hub_config: str | None = None,
    train_split: str = "train",
    validation_split: str | None = "validation",
    test_split: str = "test",
) -> LabelledSplits:
    """Load train / validation / test rows of a built-in or custom dataset.

    Args:
        dataset: One of :data:`DATASETS`, or ``"custom"``.
        data_dir: Folder with the dataset's original files (e.g. ``../shared/data/banking77``; the parent
            ``../shared/data`` works too). ``None`` loads the built-in dataset from the HF hub. For ``"custom"``,
            the folder that relative ``*_file`` paths are resolved against.
        validation_fraction: Share of each class carved from train (seeded, stratified) where no validation split
            exists; strictly between 0 and 1.
        seed: Seed of that carve.
        train_file: Custom train file (``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.parquet``).
        validation_file: Custom validation file; ``None`` carves validation from train.
        test_file: Custom test file.
        text_column: Text column of custom files / hub datasets.
        label_column: Label column of custom files / hub datasets.
        label_names: Custom data only: the fixed label order. Labels are matched by name, or else taken as integer
            ids into this list. Default: the hub ClassLabel names if any; else, when every train label is a
            non-negative integer (or a string of digits), ids are kept and the names are ``"0" .. str(max_id)``;
            otherwise the sorted unique train labels. A validation/test label outside them is an error.
        hub_id: Custom hub dataset, loaded with ``datasets.load_dataset(hub_id, hub_config, split=...)``.
        hub_config: Its config name.
        train_split: Its train split.
        validation_split: Its validation split; ``None`` carves validation from train.
        test_split: Its test split.

    Returns:
        The splits and label names, texts stripped.

    Raises:
        ValueError: Unknown dataset, misplaced or missing custom arguments, an unsupported suffix, a missing column,
            an empty text, or a label not in ``label_names``; the message names the value, file and row.
        FileNotFoundError: ``data_dir`` or an expected file is missing; the message names the expected path.
    """
    custom_args: dict[str, object] = {
        "train_file": train_file,
        "validation_file": validation_file,
        "test_file": test_file,
        "label_names": label_names,
        "hub_id": hub_id,
        "hub_config": hub_config,
    }
    _check_arguments(dataset, validation_fraction, custom_args)
    if dataset == "custom" and hub_id is not None:
        splits = {"train": train_split, "validation": validation_split, "test": test_split}
        return _load_custom_hub(
            hub_id, hub_config, splits, text_column, label_column, label_names, validation_fraction, seed
        )
    if dataset == "custom":
        files = {"train": train_file, "validation": validation_file, "test": test_file}
        return _load_custom_files(files, data_dir, text_column, label_column, label_names, validation_fraction, seed)
    if data_dir is None:
        return _load_builtin_hub(dataset, validation_fraction, seed)
    return _load_local(dataset, data_dir, validation_fraction, seed)
