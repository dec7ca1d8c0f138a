"""safetensors files as both packages write and read them: canonical bytes, finite values, nothing but safetensors.

Design decisions:
- safetensors writes its ``__metadata__`` map in hash order, which changes from process to process; ``save_tensors``
  re-serialises the header with sorted keys (compact JSON, space-padded to a multiple of 8 bytes, as safetensors
  pads it), so equal tensors and metadata give byte-identical files. Writes are atomic (``lmcore.io``).
- ``check_safetensors_file`` reads the 8-byte header length and the JSON header only, and never unpickles: a pickle or
  ``torch.save`` file given where a safetensors file is expected is refused by name, and its payload never runs.
- ``check_finite`` names the tensor holding NaN / inf: a NaN vector would make every steered logit NaN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from lmcore.io import atomic_write

_NOT_ACCEPTED = (
    "pickle and torch.save files (.pt / .pth / .bin) are not accepted, since loading them can run arbitrary code: "
    "write the file with safetensors.torch.save_file (or SteeringVector.save)"
)


def canonical_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors serialisation of ``tensors`` and ``metadata`` with a sorted, compact header."""
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=dict(metadata) if metadata else None)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` (contiguous CPU copies) and ``metadata`` to ``path`` atomically, canonically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = canonical_bytes(tensors, metadata)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _not_safetensors_reason(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        text = fh.read(n) if 2 <= n <= size - 8 else b""
    try:
        header = json.loads(text) if text[:1] == b"{" else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if isinstance(header, dict):
        return None
    if head[:1] == b"\x80":
        return "it starts with a pickle protocol opcode"
    if head[:4] == b"PK\x03\x04":
        return "it is a zip archive, as torch.save writes"
    if len(head) < 8:
        return f"{size} bytes, shorter than a safetensors header"
    return f"no JSON header of the {n} bytes its first 8 bytes announce"


def check_safetensors_file(path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless it looks like a safetensors file (header only; nothing executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    reason = _not_safetensors_reason(path)
    if reason is not None:
        raise ValueError(f"{path} is not a safetensors file ({reason}); {_NOT_ACCEPTED}")


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, after ``check_safetensors_file``."""
    from safetensors import safe_open

    check_safetensors_file(path)
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})


def check_finite(tensors: Mapping[str, torch.Tensor], where: str, fix: str) -> None:
    """Raise ``ValueError`` naming the first of ``tensors`` holding NaN or inf (``where``: which file or object)."""
    for name, t in tensors.items():
        bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if bad:
            raise ValueError(f"{where}: {name} has {bad} non-finite value(s) (NaN / inf) of {t.numel()}; {fix}")
