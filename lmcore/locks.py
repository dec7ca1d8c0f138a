"""Inter-process locks on shared cache entries (``filelock``, as the Hugging Face caches use).

Design decisions:
- One lock file per cache entry, ``<entry>.lock`` next to the entry's folder (never inside it, so an entry's
  folder holds only its data). A run holds it while it reads, computes, merges and cleans that entry, so a second
  run on the same entry waits, then finds the finished result; no run deletes files another run is writing.
- Waiting is announced once (a warning naming the lock file), then blocks without a timeout: the holder is doing
  the very work the waiter needs. The lock is an OS lock (``flock``), released when its process dies, so a killed
  run never leaves the entry locked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def lock_path(entry: str | os.PathLike[str]) -> Path:
    """The lock file of the cache entry ``entry`` (a folder or file): ``<entry>.lock``, its sibling."""
    entry = Path(entry)
    return entry.with_name(entry.name + ".lock")


@contextmanager
def entry_lock(entry: str | os.PathLike[str], what: str = "cache entry") -> Iterator[Path]:
    """Hold the lock of ``entry`` for the ``with`` block (blocking; a warning says when another process has it)."""
    from filelock import FileLock, Timeout

    path = lock_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("%s %s is in use by another process (lock %s); waiting for it to finish", what, entry, path)
        lock.acquire()
    try:
        yield path
    finally:
        lock.release()
