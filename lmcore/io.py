"""Atomic file writes and content hashes.

Design decisions:
- Every write goes to a uniquely named temporary sibling (same folder, so the rename cannot cross file systems),
  is flushed to disk, then moved over the target with ``os.replace``: readers see the old file or the complete new
  one, never half of it, and two processes writing the same target never share a temporary file.
- Hashes are SHA-256 hex digests of content (never of paths), so caches keyed by them survive moving a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place; returns ``path``.

    ``write`` receives a path that does not exist yet (e.g. for ``safetensors.torch.save_file``). On any error the
    temporary file is removed and ``path`` is left as it was. Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_json(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; ``dumps`` go to ``json.dumps`` (default ``indent=2``)."""
    return atomic_write_text(path, json.dumps(data, **({"indent": 2} | dumps)))


def atomic_write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Write ``lines`` (each without its newline) to ``path`` atomically, one per line."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for line in lines:
                fh.write(line + "\n")

    return atomic_write(path, write)


def text_sha256(*parts: str, sep: str = "\x00") -> str:
    """SHA-256 hex digest of ``parts`` joined by ``sep``."""
    return hashlib.sha256(sep.join(parts).encode()).hexdigest()


def json_sha256(data: Any) -> str:
    """SHA-256 hex digest of ``data`` as canonical JSON (sorted keys; non-JSON values through ``str``)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def files_sha256(files: Sequence[str | os.PathLike[str]], headers: Sequence[str] | None = None) -> str:
    """SHA-256 hex digest of the files' contents in order; ``headers[i]`` (if given) is hashed before file ``i``."""
    if headers is not None and len(headers) != len(files):
        raise ValueError(f"{len(headers)} headers for {len(files)} files")
    digest = hashlib.sha256()
    for i, file in enumerate(files):
        if headers is not None:
            digest.update(headers[i].encode())
        with open(file, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
