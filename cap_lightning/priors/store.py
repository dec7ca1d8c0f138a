"""Per-example store of prior results, shared by every run whose prior settings match.

The dataset-level cache (``prior_cache.py``) is keyed by the training split, so two few-shot seeds never share an
entry. Teacher-based priors (CAP) do not depend on the split: the same text, label and settings always give the
same scores, so they are also stored per example, and a new seed only pays for the texts it has not seen.

Design decisions:
- Key = sha256(namespace, text, label); ``namespace`` hashes every setting that changes the result (the prior's
  ``cache_key()`` with weight digests, the label names).
- Each ``save`` writes one new JSON part file (temp file + rename, atomic); ``load`` merges all parts. Parts are
  never rewritten, so concurrent writers (DDP ranks, parallel runs) cannot corrupt each other; an unreadable part
  is skipped with a warning and its examples are recomputed.
- Records are small JSON objects (scores, diagnostics); callers validate their shape before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any


def example_key(namespace: str, text: str, label: int) -> str:
    return hashlib.sha256(f"{namespace}\x00{label}\x00{text}".encode()).hexdigest()[:32]


class ExampleStore:
    """A folder of JSON part files mapping example keys to records."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
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

    def save(self, records: dict[str, dict[str, Any]]) -> None:
        if not records:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(records, sort_keys=True)
        name = f"part-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.json"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(payload)
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
