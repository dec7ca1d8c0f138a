"""On-disk cache of word-level priors: content-keyed, chunked, atomic, validated, resumable.

Layout under ``<cache_dir>/<key>/``: ``chunk-<start>.safetensors`` files of ``chunk_size`` rows each while a
computation runs, and ``priors.safetensors`` once all rows exist. Every file holds the ragged priors as one flat
``values`` tensor plus ``offsets`` (n + 1,), and metadata with the key, the row range and a sha256 of the values.

Design decisions:
- Chunks are defined by row ranges, not by rank, so a run interrupted on N processes resumes on M.
- Files are byte-identical for identical results (:func:`save_tensors` writes the header in sorted key order).
- Every write goes to a temporary file in the same folder and is renamed into place (``lmcore.io.atomic_write``).
- A file is used only if its header parses, its key and row range match, its checksum matches, every prior has
  the expected word count and every value is finite and in [0, 1]. Anything else is deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from lmcore.tensor_files import save_tensors

MERGED = "priors.safetensors"


def cache_key(*parts: str) -> str:
    """sha256 over the parts (prior config hash, data fingerprint, split, package version), 24 hex chars."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _checksum(values: Tensor) -> str:
    return hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()


def save_priors(path: Path, priors: Sequence[Tensor], key: str, start: int) -> None:
    """Write ``priors`` (one 1-D tensor per row) atomically to ``path``."""
    values = torch.cat([p.detach().float().cpu().reshape(-1) for p in priors]) if priors else torch.zeros(0)
    lengths = torch.tensor([0] + [p.numel() for p in priors], dtype=torch.long)
    meta = {"key": key, "start": str(start), "n": str(len(priors)), "sha256": _checksum(values)}
    save_tensors(path, {"values": values, "offsets": lengths.cumsum(0)}, meta)


def load_priors(path: Path, key: str, start: int, n_words: Sequence[int]) -> list[Tensor] | None:
    """Read and validate a priors file for rows ``start .. start+len(n_words)``; None if absent or invalid.

    An invalid file (truncated, wrong key or rows, checksum or word-count mismatch, values outside [0, 1]) is
    deleted so that the caller recomputes it.
    """
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        values, offsets = tensors["values"], tensors["offsets"]
        expected = [0, *torch.tensor(list(n_words), dtype=torch.long).cumsum(0).tolist()]
        checks = (
            (meta.get("key") == key, f"key {meta.get('key')!r}, expected {key!r}"),
            (meta.get("start") == str(start) and meta.get("n") == str(len(n_words)), "another row range"),
            (meta.get("sha256") == _checksum(values), "checksum mismatch"),
            (offsets.tolist() == expected, "word counts differ from the texts'"),
            (bool(torch.isfinite(values).all()), "non-finite values"),
            (values.numel() == 0 or bool(values.min() >= 0 and values.max() <= 1), "values outside [0, 1]"),
        )
        problem = next((why for ok, why in checks if not ok), None)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as e:
        problem = f"unreadable: {e}"
    if problem is not None:
        warnings.warn(f"dropping prior cache file {path} ({problem}); it will be recomputed", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    return [values[a:b].clone() for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete chunk files and temporary files in an entry ``folder`` (call with the entry's lock held, after the
    merged file exists, so no process is writing them); returns what was deleted."""
    stale = sorted([*folder.glob("chunk-*.safetensors"), *folder.glob(".*.tmp")]) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def chunk_path(folder: Path, start: int) -> Path:
    return folder / f"chunk-{start:08d}.safetensors"


def chunk_starts(n_rows: int, chunk_size: int) -> list[int]:
    return list(range(0, n_rows, chunk_size))
