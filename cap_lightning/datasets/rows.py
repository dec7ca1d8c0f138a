"""Raw rows (text, label, where it came from) and their assembly into :class:`LabelledSplits`.

Every reader (built-in files, custom files, the hub) produces :data:`RawSplits`; :func:`assemble` is the one place
where texts are cleaned, labels encoded and a missing validation split carved from train.

Design decisions:
- **Texts are stripped**; an empty or whitespace-only text is an error naming the file and row, never silently
  dropped.
- Validation ``None`` means "carve it from train" (:func:`~cap_lightning.datasets.splits.carve_validation`, seeded and
  stratified), so every source ends with the same three splits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from cap_lightning.datasets.labels import LabelEncoder
from cap_lightning.datasets.splits import LabelledSplits, TextExample, carve_validation


class Row(NamedTuple):
    """A row before label encoding: raw text, raw label and where it came from (for error messages)."""

    text: Any
    label: Any
    where: str


RawSplits = dict[str, list[Row] | None]  # "train" / "validation" / "test" -> rows; validation None = carve it


def clean_text(raw: object, where: str) -> str:
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise ValueError(f"{where}: empty or whitespace-only text ({raw!r})")
    return text


def encode(rows: Iterable[Row], encoder: LabelEncoder) -> list[TextExample]:
    return [TextExample(clean_text(r.text, r.where), encoder.encode(r.label, r.where)) for r in rows]


def assemble(
    name: str,
    encoder: LabelEncoder,
    raw: RawSplits,
    validation_fraction: float,
    seed: int,
) -> LabelledSplits:
    """Encode raw ``train`` / ``validation`` / ``test`` rows; carve validation from train when it is ``None``."""
    train = encode(raw["train"] or [], encoder)
    test = encode(raw["test"] or [], encoder)
    empty = [split for split, rows in (("train", train), ("test", test)) if not rows]
    if empty:
        raise ValueError(f"{name}: no rows in the {' and '.join(empty)} split(s)")
    if raw["validation"] is None:
        train, validation = carve_validation(train, validation_fraction, seed)
    else:
        validation = encode(raw["validation"], encoder)
    return LabelledSplits(name, list(encoder.names), train, validation, test)
