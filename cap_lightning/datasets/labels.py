"""Label spaces: the fixed label orders of the built-in datasets, and mapping raw labels (names or ids) to ids.

Design decisions:
- A label id is an index into the dataset's ``label_names``; the order is fixed per dataset (see ``specs.py``), so
  runs, caches and checkpoints agree.
- Raw labels are matched by name first; custom data may also give integer ids (or strings of digits) into the names.
- A label outside the names is an error naming the row and (a preview of) the allowed names, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SST2_LABELS: tuple[str, ...] = ("negative", "positive")
EMOTION_LABELS: tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")


def preview(values: Sequence[object], limit: int = 12) -> str:
    """``"['a', 'b', ...] (77 labels)"``: the first ``limit`` values, for error messages."""
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} labels)"


def as_int(value: object) -> int | None:
    """``value`` as a non-negative int if it is one (or a string of digits), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        return int(value)
    return None


def id_to_name(label: object, names: Sequence[str]) -> object:
    """``names[label]`` for an in-range integer id; anything else is returned unchanged."""
    as_id = as_int(label)
    return names[as_id] if as_id is not None and as_id < len(names) else label


class LabelEncoder:
    """Maps raw labels to ids: by name first, then (if ``accept_ids``) as an integer id in range."""

    def __init__(self, names: Sequence[str], *, accept_ids: bool) -> None:
        self.names = [str(name) for name in names]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"label_names must be unique, got {preview(self.names)}")
        self._ids = {name: i for i, name in enumerate(self.names)}
        self.accept_ids = accept_ids

    def encode(self, raw: object, where: str) -> int:
        label_id = self._ids.get(str(raw).strip())
        if label_id is None and self.accept_ids:
            as_id = as_int(raw)
            label_id = as_id if as_id is not None and as_id < len(self.names) else None
        if label_id is None:
            allowed = "a name or an integer id" if self.accept_ids else "a name"
            raise ValueError(
                f"{where}: label {raw!r} is not in label_names; expected {allowed} from {preview(self.names)}"
            )
        return label_id


def default_encoder(train_labels: Sequence[object], label_names: Sequence[str] | None) -> LabelEncoder:
    """Encoder for custom data: ``label_names`` if given; else int ids kept as ids, or sorted unique names."""
    if label_names is not None:
        return LabelEncoder(label_names, accept_ids=True)
    ids = [i for i in map(as_int, train_labels) if i is not None]
    if ids and len(ids) == len(train_labels):
        return LabelEncoder([str(i) for i in range(max(ids) + 1)], accept_ids=True)
    return LabelEncoder(sorted({str(label).strip() for label in train_labels}), accept_ids=False)
