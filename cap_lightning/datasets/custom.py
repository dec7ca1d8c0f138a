"""Custom data (``dataset="custom"``): your own csv / tsv / jsonl / json / parquet files, or any hub dataset.

Design decisions:
- :class:`CustomData` is the one typed description of custom data: ``load_splits(custom=...)`` takes it, and
  ``CapDataModule(custom=...)`` takes it as a nested init argument (``data.init_args.custom`` in YAML), so its
  options are written once.
- Files are chosen by suffix (:data:`~cap_lightning.datasets.tables.SUPPORTED_SUFFIXES`; tsv is read without quote
  handling, as GLUE writes it); relative paths are taken from ``data_dir``. Suffix and existence are checked before
  any file is parsed.
- Labels may be names or integer ids (see :attr:`CustomData.label_names` for the default label order).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

from cap_lightning.datasets.duplicates import drop_test_duplicates, overlap_message, overlap_with_test
from cap_lightning.datasets.encoding import DEFAULT_ENCODING, check_encoding, custom_hint
from cap_lightning.datasets.hub import class_label_names, hub_rows, hub_split
from cap_lightning.datasets.labels import default_encoder
from cap_lightning.datasets.rows import RawSplits, assemble
from cap_lightning.datasets.splits import LabelledSplits
from cap_lightning.datasets.tables import SUPPORTED_SUFFIXES, read_table


@dataclass(frozen=True)
class CustomData:
    """Where ``dataset="custom"`` rows come from: local files, or a hub dataset.

    Attributes:
        train_file: Train file (``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.parquet``); relative paths are taken
            from ``data_dir``.
        validation_file: Validation file; ``None`` carves validation from train.
        test_file: Test file.
        text_column: Text column of the files / hub dataset.
        label_column: Label column of the files / hub dataset.
        label_names: The fixed label order. Labels are matched by name, or else taken as integer ids into this list.
            Default: the hub ClassLabel names if any; else, when every train label is a non-negative integer (or a
            string of digits), ids are kept and the names are ``"0" .. str(max_id)``; otherwise the sorted unique
            train labels. A validation/test label outside them is an error.
        hub_id: A hub dataset instead of files, loaded with ``datasets.load_dataset(hub_id, hub_config, split=...)``.
        hub_config: Its config name.
        train_split: Its train split.
        validation_split: Its validation split; ``None`` carves validation from train.
        test_split: Its test split.
        encoding: Text encoding of the csv / tsv / jsonl / json files (a Python codec name: ``utf-8``, ``latin-1``,
            ``cp1252``, ...). A byte that does not decode is an error naming the file and line.
        drop_duplicates: drop train and validation rows whose text is also in test (exact duplicates). Either way
            they are counted, with a warning when there are any.
    """

    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str = "test"
    encoding: str = DEFAULT_ENCODING
    drop_duplicates: bool = False

    def given(self) -> list[str]:
        """Names of the options set away from their defaults."""
        return [f.name for f in fields(self) if getattr(self, f.name) != f.default]


def check_custom(dataset: str, custom: CustomData | None) -> None:
    """Custom options only with ``dataset="custom"``, and either files or a hub id; a known ``encoding``."""
    given = custom.given() if custom is not None else []
    if custom is not None:
        check_encoding(custom.encoding, "custom data encoding")
    if dataset != "custom" and given:
        raise ValueError(f"{given} only apply to dataset='custom', not to dataset={dataset!r}")
    if dataset == "custom" and custom is not None and custom.hub_id is not None and custom.train_file is not None:
        raise ValueError("dataset='custom': give either hub_id or train_file/test_file, not both")


def load_custom(
    custom: CustomData, data_dir: str | Path | None, validation_fraction: float, seed: int
) -> LabelledSplits:
    """The rows ``custom`` describes (checked with :func:`check_custom` beforehand); texts shared with test are
    counted (a warning) and, with ``drop_duplicates``, dropped from train and validation."""
    if custom.hub_id is not None:
        splits = _load_hub(custom, validation_fraction, seed)
    else:
        splits = _load_files(custom, data_dir, validation_fraction, seed)
    message = overlap_message("custom data", overlap_with_test(splits))
    if message is None:
        return splits
    if not custom.drop_duplicates:
        warnings.warn(message, stacklevel=2)
        return splits
    return drop_test_duplicates(splits)


def _load_hub(custom: CustomData, validation_fraction: float, seed: int) -> LabelledSplits:
    hub_id, text_column, label_column = str(custom.hub_id), custom.text_column, custom.label_column
    splits = {"train": custom.train_split, "validation": custom.validation_split, "test": custom.test_split}
    loaded = {role: hub_split(hub_id, custom.hub_config, name) for role, name in splits.items() if name is not None}
    id_names = class_label_names(loaded["train"], label_column)
    raw: RawSplits = {"validation": None}
    for role, ds in loaded.items():
        raw[role] = hub_rows(ds, f"{hub_id}[{splits[role]}]", text_column, label_column, id_names)
    names = custom.label_names if custom.label_names is not None else id_names
    encoder = default_encoder([r.label for r in raw["train"] or []], names)
    return assemble("custom", encoder, raw, validation_fraction, seed)


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


def _load_files(
    custom: CustomData, data_dir: str | Path | None, validation_fraction: float, seed: int
) -> LabelledSplits:
    files = {"train": custom.train_file, "validation": custom.validation_file, "test": custom.test_file}
    if files["train"] is None or files["test"] is None:
        raise ValueError(
            "dataset='custom' needs train_file and test_file (validation_file is optional: it is carved from train), "
            "or hub_id for a hub dataset"
        )
    paths = {role: _check_custom_file(f"{role}_file", f, data_dir) for role, f in files.items() if f is not None}
    raw: RawSplits = {"validation": None}
    hint = custom_hint(custom.encoding)
    for role, path in paths.items():
        raw[role] = read_table(path, custom.text_column, custom.label_column, custom.encoding, hint)
    encoder = default_encoder([r.label for r in raw["train"] or []], custom.label_names)
    return assemble("custom", encoder, raw, validation_fraction, seed)
