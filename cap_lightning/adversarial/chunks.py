"""Resumable, content-keyed generation: fixed chunks of rows, each written atomically, merged at the end.

Design decisions:
- An entry is a folder ``<cache_dir>/<key>/`` where ``key`` = SHA-256 of a JSON description of everything that
  determines the output (victim weights hash, recipe and its settings, data fingerprint, label names, versions).
  The description is stored as ``meta.json``; a different key never reuses rows.
- Work is split into chunks of ``chunk_size`` source positions. Chunk ``i`` is written atomically with
  :func:`~cap_lightning.adversarial.format.write_adversarial_jsonl`, so after an interruption a chunk file is either
  complete or absent. A chunk file is trusted only if it parses and holds exactly the source indices
  it should (a truncated or foreign file is deleted and redone).
- Generators may drop rows (the keyword-injection validity filter), so a chunk's expected indices are a superset
  check: every row's ``index`` must belong to the chunk, and a sidecar ``chunk-<start>.done`` marker (written after the
  chunk) records how many source positions were processed.
- :func:`run_chunks` holds the entry's file lock (``lmcore.locks``, ``<key>.lock`` next to the folder): a second
  run on the same entry waits, then finds every chunk finished and computes none.
- Rows are merged in chunk order into the final split file, itself written atomically.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from cap_lightning.adversarial.format import AdversarialExample, read_adversarial_jsonl, write_adversarial_jsonl
from lmcore.io import atomic_write_text, json_sha256
from lmcore.locks import entry_lock


def entry_key(description: dict) -> str:
    """SHA-256 of the canonical JSON of ``description`` (sorted keys)."""
    return json_sha256(description)


class ChunkStore:
    """The chunk files of one cache entry.

    Args:
        folder: entry folder (``<cache_dir>/<key>``); created with ``meta.json`` on first use.
        description: what the key hashes; must match an existing ``meta.json``.
        n_items: number of source positions to process.
        chunk_size: source positions per chunk.
    """

    def __init__(self, folder: str | Path, description: dict, n_items: int, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.folder = Path(folder)
        self.n_items = n_items
        self.chunk_size = chunk_size
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "meta.json"
        text = json.dumps(description, sort_keys=True, indent=2, ensure_ascii=False)
        if meta.is_file() and json.loads(meta.read_text()) != json.loads(text):
            raise ValueError(f"{meta} describes another run; the cache entry does not match its key")
        if not meta.is_file():
            atomic_write_text(meta, text)

    @property
    def n_chunks(self) -> int:
        return (self.n_items + self.chunk_size - 1) // self.chunk_size

    def bounds(self, chunk: int) -> range:
        return range(chunk * self.chunk_size, min(self.n_items, (chunk + 1) * self.chunk_size))

    def path(self, chunk: int) -> Path:
        return self.folder / f"chunk-{chunk:05d}.jsonl"

    def _marker(self, chunk: int) -> Path:
        return self.folder / f"chunk-{chunk:05d}.done"

    def load(self, chunk: int, index_of: Callable[[int], int]) -> list[AdversarialExample] | None:
        """The rows of a finished chunk, or None (missing, incomplete or inconsistent files are removed)."""
        path, marker = self.path(chunk), self._marker(chunk)
        if not (path.is_file() and marker.is_file()):
            return None
        problem = None
        try:
            rows = read_adversarial_jsonl(path)
            done = int(marker.read_text().strip())
        except (ValueError, OSError) as e:
            rows, done, problem = None, -1, f"unreadable: {e}"
        allowed = {index_of(p) for p in self.bounds(chunk)}
        if problem is None and done != len(self.bounds(chunk)):
            problem = f"marker says {done} positions, the chunk has {len(self.bounds(chunk))}"
        if problem is None and any(r.index not in allowed for r in rows or []):
            problem = "rows of other source positions"
        if problem is not None:
            warnings.warn(f"dropping adversarial chunk {path} ({problem}); it will be recomputed", stacklevel=2)
            path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            return None
        return rows

    def save(self, chunk: int, rows: Sequence[AdversarialExample]) -> None:
        write_adversarial_jsonl(self.path(chunk), rows)
        atomic_write_text(self._marker(chunk), str(len(self.bounds(chunk))))

    def finished(self, index_of: Callable[[int], int]) -> list[int]:
        return [c for c in range(self.n_chunks) if self.load(c, index_of) is not None]


def run_chunks(
    store: ChunkStore,
    index_of: Callable[[int], int],
    process: Callable[[range], list[AdversarialExample]],
    desc: str,
    progress: bool = True,
) -> tuple[list[AdversarialExample], int]:
    """Process every unfinished chunk with ``process(positions)`` and return ``(all rows, chunks computed now)``.

    ``index_of(position)`` is the source-split index of a position (what rows carry in ``index``).
    """
    rows: list[AdversarialExample] = []
    computed = 0
    with (
        entry_lock(store.folder, "adversarial cache entry"),
        tqdm(total=store.n_items, desc=desc, unit="ex", disable=not progress) as bar,
    ):
        for chunk in range(store.n_chunks):
            done = store.load(chunk, index_of)
            if done is None:
                done = process(store.bounds(chunk))
                store.save(chunk, done)
                computed += 1
            rows.extend(done)
            bar.update(len(store.bounds(chunk)))
            if rows:
                bar.set_postfix(successful=sum(r.status == "successful" for r in rows))
    return rows, computed
