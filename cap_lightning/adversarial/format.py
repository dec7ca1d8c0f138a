"""The attacked-split file format: JSON lines, one :class:`AdversarialExample` per line.

Design decisions:
- Every generator (TextAttack, LLM keyword injection) writes this format and ``CapDataModule(split="adversarial")``
  and ``RobustnessCallback`` read it; a hand-written file with the required keys works too.
- Writes are atomic (:func:`lmcore.io.atomic_write_lines`: a temp file in the same folder, then ``os.replace``), so a
  crashed generation run never leaves a half-written split.
- Reading fails on the first bad line with the file and line number; unknown keys are ignored, so a newer writer's
  extra fields do not break an older reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from lmcore.choices import choices
from lmcore.io import atomic_write_lines

__all__ = ["ATTACK_STATUSES", "AdversarialExample", "AttackStatus", "read_adversarial_jsonl", "write_adversarial_jsonl"]

AttackStatus = Literal["successful", "failed", "skipped"]
ATTACK_STATUSES: tuple[str, ...] = choices(AttackStatus)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class AdversarialExample:
    """One row of an attacked split file (JSON lines, one object per line).

    Attributes:
        text: The attacked text.
        label: Gold label id.
        original_text: The clean text the attack started from.
        recipe: Attack recipe, e.g. ``"deepwordbug"``, ``"pwws"``, ``"llm_keyword_injection"``.
        status: TextAttack result status, one of :data:`ATTACK_STATUSES`.
        queries: Model queries the attack used, when known.
        index: Row index of ``original_text`` in the source split, when known.
    """

    text: str
    label: int
    original_text: str
    recipe: str
    status: AttackStatus = "successful"
    queries: int | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        for name in ("text", "original_text", "recipe", "status"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not _is_int(self.label):
            raise ValueError(f"label must be an integer id, got {self.label!r}")
        if self.status not in ATTACK_STATUSES:
            raise ValueError(f"status must be one of {ATTACK_STATUSES}, got {self.status!r}")
        for name in ("queries", "index"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise ValueError(f"{name} must be an integer or null, got {value!r}")


_FIELDS = tuple(f.name for f in fields(AdversarialExample))
_REQUIRED = ("text", "label", "original_text", "recipe")


def _lines(rows: Iterable[AdversarialExample]) -> Iterator[str]:
    for row in rows:
        if not isinstance(row, AdversarialExample):
            raise TypeError(f"expected AdversarialExample rows, got {type(row).__name__}")
        yield json.dumps(asdict(row), ensure_ascii=False)


def write_adversarial_jsonl(path: str | os.PathLike[str], rows: Iterable[AdversarialExample]) -> None:
    """Write ``rows`` to ``path`` as JSON lines, atomically.

    Readers see either the old file or the complete new one. Missing parent folders are created.

    Args:
        path: Destination ``.jsonl`` file.
        rows: Rows to write, in order.

    Raises:
        TypeError: If a row is not an :class:`AdversarialExample` (nothing is written).
    """
    atomic_write_lines(path, _lines(rows))


def _parse_line(line: str, where: str) -> AdversarialExample:
    """One JSON line → :class:`AdversarialExample`; errors are prefixed with ``where`` (``file:line``)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}; present: {sorted(record)}")
    try:
        return AdversarialExample(**{key: record[key] for key in _FIELDS if key in record})
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def read_adversarial_jsonl(path: str | os.PathLike[str]) -> list[AdversarialExample]:
    """Read an attacked split written by :func:`write_adversarial_jsonl` (or by hand).

    Blank lines are skipped; keys other than the :class:`AdversarialExample` fields are ignored.

    Args:
        path: The ``.jsonl`` file.

    Returns:
        The rows, in file order.

    Raises:
        FileNotFoundError: If ``path`` does not exist (the message says the file comes from the adversarial
            generation command).
        ValueError: On a malformed line, a missing key or a bad value; the message names the file and line number.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(
            f"adversarial split file not found: {source}. It is produced by the adversarial generation command "
            "(cap_lightning.adversarial); run it first, or point the path at an existing .jsonl file."
        )
    rows: list[AdversarialExample] = []
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_parse_line(line, f"{source}:{line_no}"))
    return rows
