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

from cap_lightning.datasets.custom import CustomData, check_custom, load_custom
from cap_lightning.datasets.hub import load_builtin_hub
from cap_lightning.datasets.labels import LabelEncoder
from cap_lightning.datasets.readers import dataset_root
from cap_lightning.datasets.rows import assemble
from cap_lightning.datasets.specs import DATASETS, SPECS
from cap_lightning.datasets.splits import LabelledSplits


def check_arguments(dataset: str, validation_fraction: float, custom: CustomData | None) -> None:
    """Everything :func:`load_splits` can check before reading a file."""
    allowed = (*DATASETS, "custom")
    if dataset not in allowed:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(allowed)}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be strictly between 0 and 1, got {validation_fraction!r}")
    check_custom(dataset, custom)


def load_splits(
    dataset: str = "sst2",
    data_dir: str | Path | None = None,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    custom: CustomData | None = None,
) -> LabelledSplits:
    """Load train / validation / test rows of a built-in or custom dataset.

    Args:
        dataset: One of :data:`~cap_lightning.datasets.specs.DATASETS`, or ``"custom"``.
        data_dir: Folder with the dataset's original files (e.g. ``../shared/data/banking77``; the parent
            ``../shared/data`` works too). ``None`` loads the built-in dataset from the HF hub. For ``"custom"``,
            the folder that relative file paths are resolved against.
        validation_fraction: Share of each class carved from train (seeded, stratified) where no validation split
            exists; strictly between 0 and 1.
        seed: Seed of that carve.
        custom: For ``dataset="custom"``: the files or hub dataset (:class:`~cap_lightning.datasets.custom.CustomData`);
            with a built-in dataset it must be ``None`` or left at its defaults.

    Returns:
        The splits and label names, texts stripped.

    Raises:
        ValueError: Unknown dataset, misplaced or missing custom options, an unsupported suffix, a missing column,
            an empty text, or a label not in ``label_names``; the message names the value, file and row.
        FileNotFoundError: ``data_dir`` or an expected file is missing; the message names the expected path.
    """
    check_arguments(dataset, validation_fraction, custom)
    if dataset == "custom":
        return load_custom(custom or CustomData(), data_dir, validation_fraction, seed)
    spec = SPECS[dataset]
    if data_dir is None:
        return load_builtin_hub(dataset, spec.hub, validation_fraction, seed)
    label_names, raw = spec.read(dataset_root(dataset, spec.files, data_dir))
    return assemble(dataset, LabelEncoder(label_names, accept_ids=False), raw, validation_fraction, seed)
