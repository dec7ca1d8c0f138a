"""Labelled text-classification data: built-in datasets from their original files (or the HF hub), custom files,
few-shot and validation splits, and ``CapDataModule``.

:func:`load_splits` is the single entry point for rows; :class:`CapDataModule` wires it to Lightning.

| Module | Owns |
|---|---|
| ``splits`` | ``TextExample``, ``LabelledSplits``; few-shot sampling, validation carving, data fingerprints (pure) |
| ``labels`` | label spaces (fixed label orders) and encoding raw labels (names or ids) to ids |
| ``rows`` | raw rows and their assembly into ``LabelledSplits`` (text clean-up, encoding, validation carve) |
| ``tables`` | csv / tsv / jsonl / json / parquet files → raw rows |
| ``readers`` | the original files of each built-in dataset |
| ``hub`` | the HF hub copies (``data_dir=None``), mapped onto the local label orders |
| ``prompt`` | ``TeacherPrompt``: the CAP teacher's instruction, text prefix and answer prefix |
| ``specs`` | the built-in dataset specs: files, label space, reader, hub copy, teacher prompt |
| ``custom`` | ``CustomData`` (``dataset="custom"``): your own files or hub id |
| ``load`` | ``load_splits`` |
| ``datamodule`` | ``CapDataModule`` |

``CapDataModule`` is imported lazily, so ``import cap_lightning.datasets`` loads neither torch nor Lightning.
"""

from __future__ import annotations

from cap_lightning.datasets.custom import CustomData
from cap_lightning.datasets.labels import EMOTION_LABELS, SST2_LABELS
from cap_lightning.datasets.load import load_splits
from cap_lightning.datasets.prompt import TeacherPrompt
from cap_lightning.datasets.specs import DATASETS, SPECS, BuiltinDataset, DatasetName, DatasetSpec
from cap_lightning.datasets.splits import LabelledSplits, TextExample, carve_validation, data_fingerprint, few_shot
from cap_lightning.datasets.tables import SUPPORTED_SUFFIXES
from lmcore.exports import lazy_exports

_LAZY = {"CapDataModule": "cap_lightning.datasets.datamodule"}

__all__ = [
    "DATASETS",
    "EMOTION_LABELS",
    "SPECS",
    "SST2_LABELS",
    "SUPPORTED_SUFFIXES",
    "BuiltinDataset",
    "CustomData",
    "CapDataModule",
    "DatasetName",
    "DatasetSpec",
    "LabelledSplits",
    "TeacherPrompt",
    "TextExample",
    "carve_validation",
    "data_fingerprint",
    "few_shot",
    "load_splits",
]


__getattr__ = lazy_exports(__name__, _LAZY)
