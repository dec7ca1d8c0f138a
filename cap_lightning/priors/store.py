"""Per-example store of prior results, shared by every run whose prior settings match.

The dataset-level cache (``cache.py``) is keyed by the training split, so two few-shot seeds never share an entry.
Teacher-based priors (CAP) do not depend on the split: the same text, label and settings always give the same
scores, so they are also stored per example, and a new seed only pays for the texts it has not seen. The hybrid
stores its other sources the same way.

Design decisions:
- Key = sha256(namespace, text, label); ``namespace`` (:func:`store_namespace`) hashes every setting that changes
  the result (the prior's ``cache_key()`` with weight digests, the label names).
- Each ``save`` writes one new JSON part file (``lmcore.io.atomic_write_text``); ``load`` merges all parts. Parts
  are never rewritten, so concurrent writers (DDP ranks, parallel runs) cannot corrupt each other; an unreadable
  part is skipped with a warning and its examples are recomputed.
- Computing is locked per set of missing examples (``lmcore.locks``): two runs missing the same examples compute
  them once (the second waits, re-reads the parts, and finds them); different examples never wait for each other.
- Records are small JSON objects (``prior`` scores and diagnostics). :func:`lookup_or_compute` is the one loop over
  them: records in memory, else valid stored ones (``prior`` has one value in [0, 1] per word), else computed and
  saved. A hit and a recompute give the same scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cap_lightning.tokens import split_words
from lmcore.io import atomic_write_text, text_sha256
from lmcore.locks import entry_lock

Record = dict[str, Any]


def store_namespace(*parts: Any) -> str:
    """sha256 of the JSON list of ``parts`` (a prior's ``cache_key()``, label names, ...)."""
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def example_key(namespace: str, text: str, label: int) -> str:
    return text_sha256(namespace, str(label), text)[:32]


class ExampleStore:
    """A folder of JSON part files mapping example keys to records."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self) -> dict[str, Record]:
        records: dict[str, Record] = {}
        for part in sorted(self.folder.glob("part-*.json")):
            try:
                data = json.loads(part.read_text())
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                warnings.warn(f"skipping unreadable prior cache part {part}: {e}", stacklevel=2)
                continue
            records.update(data)
        return records

    def lock(self, keys: Sequence[str]):
        """The lock of computing the examples ``keys`` (a context manager): two runs about to compute the same
        examples take the same lock, so the second waits and then reads the first's part; runs (or DDP ranks)
        computing other examples do not wait for each other."""
        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]
        return entry_lock(self.folder / f"compute-{digest}", "per-example prior store")

    def save(self, records: dict[str, Record]) -> None:
        if not records:
            return
        payload = json.dumps(records, sort_keys=True)
        atomic_write_text(self.folder / f"part-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.json", payload)


def valid_record(record: Record | None, text: str) -> bool:
    """A stored record is usable if its ``prior`` has one number in [0, 1] per word of ``text``."""
    if not record or not isinstance(record.get("prior"), list) or len(record["prior"]) != len(split_words(text)):
        return False
    return all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in record["prior"])


def lookup_or_compute(
    keys: Sequence[str],
    texts: Sequence[str],
    compute: Callable[[list[int]], list[Record]],
    store: ExampleStore | None,
    memory: dict[str, Record] | None = None,
) -> list[Record]:
    """The record of each example: from ``memory``, else a valid one from ``store``, else ``compute(indices)`` of
    the rest in one call (then saved to both).

    Args:
        keys: :func:`example_key` of each example.
        texts: the examples' texts (to validate stored records).
        compute: records of the examples at the given indices, in that order.
        store: the per-example store (None: nothing is read or written).
        memory: records already known in this process (updated in place); None: none.
    """
    memory = {} if memory is None else memory
    stored = store.load() if store is not None else {}
    for key, text in zip(keys, texts):
        if key not in memory and valid_record(stored.get(key), text):
            memory[key] = stored[key]
    todo = [i for i, key in enumerate(keys) if key not in memory]
    if todo and store is None:
        memory.update(zip([keys[i] for i in todo], compute(todo)))
    elif todo:
        with store.lock([keys[i] for i in todo]):
            stored = store.load()  # another run may have saved them while this one waited
            for i in todo:
                if valid_record(stored.get(keys[i]), texts[i]):
                    memory[keys[i]] = stored[keys[i]]
            todo = [i for i in todo if keys[i] not in memory]
            if todo:
                new = dict(zip([keys[i] for i in todo], compute(todo)))
                memory.update(new)
                store.save(new)
    return [memory[key] for key in keys]
