"""The built-in datasets: for each, its original files, its label space, its reader, its hub copy and the CAP
teacher's prompt.

**Label ids are fixed per dataset and documented**, so runs, caches and checkpoints agree:

============  ============================================================================================
sst2          ``negative, positive`` (GLUE ids 0/1)
banking77     index in ``banking_data/categories.json`` (the HF ``PolyAI/banking77`` ClassLabel order)
hwu64         index in ``data/hwu/categories.json`` (alphabetical)
clinc150      ``sorted()`` of the 150 in-scope intents; the ``oos`` rows (``oos_*`` keys) are dropped
emotion       ``sadness, joy, love, anger, fear, surprise`` (the HF ``dair-ai/emotion`` ClassLabel order)
============  ============================================================================================

A new dataset is one :class:`DatasetSpec` in :data:`SPECS` (and its name in :data:`BuiltinDataset`), plus a reader
of its original files in ``readers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cap_lightning.datasets.hub import HubSpec
from cap_lightning.datasets.labels import EMOTION_LABELS, SST2_LABELS
from cap_lightning.datasets.prompt import TeacherPrompt
from cap_lightning.datasets.readers import (
    LocalReader,
    read_banking77,
    read_clinc150,
    read_emotion,
    read_hwu64,
    read_sst2,
)
from lmcore.choices import choices

BuiltinDataset = Literal["sst2", "banking77", "hwu64", "clinc150", "emotion"]
DatasetName = Literal[BuiltinDataset, "custom"]  # "custom": your own files or hub id (``custom.py``)


@dataclass(frozen=True)
class DatasetSpec:
    """One built-in dataset.

    Attributes:
        name: The ``dataset`` value that selects it.
        files: Its original files, relative to its folder (``../shared/data/<name>``); all are checked before any
            is parsed.
        label_space: Where the label order comes from (the table above).
        read: Reads the folder into ``(label names, raw splits)``.
        hub: Its copy on the HF hub, used when ``data_dir`` is None.
        prompt: The CAP teacher's prompt for it.
    """

    name: str
    files: tuple[str, ...]
    label_space: str
    read: LocalReader
    hub: HubSpec
    prompt: TeacherPrompt


SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "sst2",
            ("SST-2/train.tsv", "SST-2/dev.tsv", "SST-2/test.tsv"),
            "negative, positive (GLUE ids 0/1)",
            read_sst2,
            HubSpec("stanfordnlp/sst2", None, "sentence", "label", None, "validation", label_names=SST2_LABELS),
            TeacherPrompt(
                "Classify the sentiment of the movie review as one of the following labels.", "Review:", "Sentiment:"
            ),
        ),
        DatasetSpec(
            "banking77",
            ("banking_data/train.csv", "banking_data/test.csv", "banking_data/categories.json"),
            "index in banking_data/categories.json",
            read_banking77,
            HubSpec("PolyAI/banking77", None, "text", "label", None, "test"),
            TeacherPrompt(
                "Classify the banking customer query into exactly one of the following intents.", "Query:", "Intent:"
            ),
        ),
        DatasetSpec(
            "hwu64",
            ("data/hwu/train.csv", "data/hwu/val.csv", "data/hwu/test.csv", "data/hwu/categories.json"),
            "index in data/hwu/categories.json (alphabetical)",
            read_hwu64,
            HubSpec(
                "AutoIntent/hwu64", None, "utterance", "label", None, "test", sort_names=True, names_config="intents"
            ),
            TeacherPrompt(
                "Classify the request to a home assistant into exactly one of the following intents.",
                "Request:",
                "Intent:",
            ),
        ),
        DatasetSpec(
            "clinc150",
            ("data/data_full.json",),
            "sorted() of the 150 in-scope intents (oos dropped)",
            read_clinc150,
            HubSpec(
                "clinc/clinc_oos", "plus", "text", "intent", "validation", "test", sort_names=True, drop_labels=("oos",)
            ),
            TeacherPrompt(
                "Classify the user utterance into exactly one of the following intents.", "Utterance:", "Intent:"
            ),
        ),
        DatasetSpec(
            "emotion",
            ("data/emotion/train.txt", "data/emotion/val.txt", "data/emotion/test.txt"),
            ", ".join(EMOTION_LABELS),
            read_emotion,
            HubSpec("dair-ai/emotion", "split", "text", "label", "validation", "test", label_names=EMOTION_LABELS),
            TeacherPrompt(
                "Classify the emotion of the text into exactly one of the following labels.", "Text:", "Emotion:"
            ),
        ),
    )
}

DATASETS: tuple[str, ...] = choices(BuiltinDataset)  # == tuple(SPECS), checked by the tests
