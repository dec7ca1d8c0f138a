"""The HF hub copies of the datasets (``data_dir=None``), read into the same raw rows as the local files.

Design decisions:
- ``datasets.load_dataset`` is imported only when the hub is used (the reference machine has no hub access).
- A built-in dataset's :class:`HubSpec` maps its hub copy onto the same label order as the local files, so the two
  paths are interchangeable. Where the hub copy has no validation split one is carved from train; SST-2's hub
  ``validation`` (GLUE dev) is used as test, as locally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cap_lightning.datasets.labels import LabelEncoder, id_to_name
from cap_lightning.datasets.rows import RawSplits, Row, assemble
from cap_lightning.datasets.splits import LabelledSplits
from cap_lightning.datasets.tables import check_columns


@dataclass(frozen=True)
class HubSpec:
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


def hub_split(hub_id: str, config: str | None, split: str) -> Any:
    import datasets

    return datasets.load_dataset(hub_id, config, split=split)


def class_label_names(ds: Any, label_column: str) -> list[str] | None:
    feature = ds.features.get(label_column)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def hub_rows(ds: Any, source: str, text_column: str, label_column: str, id_names: Sequence[str] | None) -> list[Row]:
    """Rows of a hub split; integer labels become names when ``id_names`` is given."""
    check_columns(ds.column_names, (text_column, label_column), source)
    texts, labels = ds[text_column], ds[label_column]
    if id_names is not None:
        labels = [id_to_name(lab, id_names) for lab in labels]
    return [Row(t, lab, f"{source}, row {i}") for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)]


def _names_from_config(spec: HubSpec) -> list[str]:
    ds = hub_split(spec.hub_id, spec.names_config, str(spec.names_config))
    by_id = dict(zip(ds["id"], ds["name"], strict=True))
    return [by_id[i] for i in sorted(by_id)]


def load_builtin_hub(dataset: str, spec: HubSpec, validation_fraction: float, seed: int) -> LabelledSplits:
    """The built-in ``dataset`` from its hub copy ``spec``, in the local files' label order."""
    splits = {"train": "train", "validation": spec.validation_split, "test": spec.test_split}
    loaded = {role: hub_split(spec.hub_id, spec.config, name) for role, name in splits.items() if name is not None}
    if spec.label_names is not None:
        hub_names: list[str] | None = list(spec.label_names)
    elif spec.names_config is not None:
        hub_names = _names_from_config(spec)
    else:
        hub_names = class_label_names(loaded["train"], spec.label_column)
    if hub_names is None:
        raise ValueError(f"{spec.hub_id}: column {spec.label_column!r} carries no label names (ClassLabel expected)")
    target = [n for n in (sorted(hub_names) if spec.sort_names else hub_names) if n not in spec.drop_labels]
    raw: RawSplits = {"validation": None}
    for role, ds in loaded.items():
        rows = hub_rows(ds, f"{spec.hub_id}[{splits[role]}]", spec.text_column, spec.label_column, hub_names)
        raw[role] = [r for r in rows if r.label not in spec.drop_labels]
    return assemble(dataset, LabelEncoder(target, accept_ids=False), raw, validation_fraction, seed)
