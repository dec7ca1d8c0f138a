"""The single entry point, :func:`load_splits`: a built-in dataset from its original files or the hub, or custom data.

It returns a :class:`~cap_lightning.datasets.splits.LabelledSplits` of plain
:class:`~cap_lightning.datasets.splits.TextExample` lists, ready for a data module, a prior cache or a few-shot draw.

Design decisions:
- **Fail fast.** Names, paths, suffixes and columns are checked before any large file is parsed, and every error
  names the bad value together with what is allowed.
- ``data_dir=None`` loads a built-in dataset from the HF hub (``hub.py``), in the same label order as its files.
"""

from __future__ import annotations

from pathlib import Path

from cap_lightning.datasets.custom import load_custom_files, load_custom_hub
from cap_lightning.datasets.hub import load_builtin_hub
from cap_lightning.datasets.labels import LabelEncoder
from cap_lightning.datasets.readers import dataset_root
from cap_lightning.datasets.rows import assemble
from cap_lightning.datasets.specs import DATASETS, SPECS
from cap_lightning.datasets.splits import LabelledSplits


def check_arguments(dataset: str, validation_fraction: float, custom_args: dict[str, object]) -> None:
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
    check_arguments(dataset, validation_fraction, custom_args)
    if dataset == "custom" and hub_id is not None:
        splits = {"train": train_split, "validation": validation_split, "test": test_split}
        return load_custom_hub(
            hub_id, hub_config, splits, text_column, label_column, label_names, validation_fraction, seed
        )
    if dataset == "custom":
        files = {"train": train_file, "validation": validation_file, "test": test_file}
        return load_custom_files(files, data_dir, text_column, label_column, label_names, validation_fraction, seed)
    spec = SPECS[dataset]
    if data_dir is None:
        return load_builtin_hub(dataset, spec.hub, validation_fraction, seed)
    label_names, raw = spec.read(dataset_root(dataset, spec.files, data_dir))
    return assemble(dataset, LabelEncoder(label_names, accept_ids=False), raw, validation_fraction, seed)
