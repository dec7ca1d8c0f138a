"""Custom data (``dataset="custom"``): your own csv / tsv / jsonl / json / parquet files, or any hub dataset.

Design decisions:
- Files are chosen by suffix (:data:`~cap_lightning.datasets.tables.SUPPORTED_SUFFIXES`); relative paths are taken
  from ``data_dir``. Suffix and existence are checked before any file is parsed.
- Labels may be names or integer ids; see :func:`~cap_lightning.datasets.load.load_splits` for how ``label_names``
  is derived when not given.
"""

from __future__ import annotations

from pathlib import Path

from cap_lightning.datasets.hub import class_label_names, hub_rows, hub_split
from cap_lightning.datasets.labels import default_encoder
from cap_lightning.datasets.rows import RawSplits, assemble
from cap_lightning.datasets.splits import LabelledSplits
from cap_lightning.datasets.tables import SUPPORTED_SUFFIXES, read_table


def load_custom_hub(
    hub_id: str,
    hub_config: str | None,
    splits: dict[str, str | None],
    text_column: str,
    label_column: str,
    label_names: list[str] | None,
    validation_fraction: float,
    seed: int,
) -> LabelledSplits:
    loaded = {role: hub_split(hub_id, hub_config, name) for role, name in splits.items() if name is not None}
    id_names = class_label_names(loaded["train"], label_column)
    raw: RawSplits = {"validation": None}
    for role, ds in loaded.items():
        raw[role] = hub_rows(ds, f"{hub_id}[{splits[role]}]", text_column, label_column, id_names)
    names = label_names if label_names is not None else id_names
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


def load_custom_files(
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
    raw: RawSplits = {"validation": None}
    raw.update({role: read_table(path, text_column, label_column) for role, path in paths.items()})
    encoder = default_encoder([r.label for r in raw["train"] or []], label_names)
    return assemble("custom", encoder, raw, validation_fraction, seed)
