"""Text encodings of data files: checking an ``encoding`` option, and turning a decode failure into a clear error.

Design decisions:
- Files are decoded as a whole-file stream, so Python's ``UnicodeDecodeError`` only gives a byte position inside
  some buffer; :func:`decoding` catches it and re-decodes the file's bytes once to name the **line** (1-based) and
  the byte, then says which ``encoding`` to set. This happens only on failure, so reading stays streaming.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_ENCODING = "utf-8"


def check_encoding(encoding: str, option: str = "encoding") -> None:
    """Raise a ``ValueError`` naming ``encoding`` unless Python knows it as a text codec."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(
            f"{option} {encoding!r} is not a known text encoding; use a Python codec name such as 'utf-8', "
            "'latin-1' or 'cp1252'"
        ) from None


def decode_error_line(data: bytes, encoding: str) -> tuple[int, int] | None:
    """``(line, byte offset)`` of the first byte of ``data`` that ``encoding`` cannot decode; None if all decode."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as err:
        return data.count(b"\n", 0, err.start) + 1, err.start
    return None


@contextmanager
def decoding(path: Path, encoding: str, hint: str) -> Iterator[None]:
    """Turn a ``UnicodeDecodeError`` raised while reading ``path`` into a ``ValueError`` naming the file, the line,
    the byte and ``hint`` (what to set)."""
    try:
        yield
    except UnicodeDecodeError as err:
        data = Path(path).read_bytes()
        where = decode_error_line(data, encoding)
        if where is None:  # the stream failed although the whole file decodes: name what Python said
            raise ValueError(f"{path}: not valid {encoding} ({err}); {hint}") from err
        line, offset = where
        raise ValueError(
            f"{path}, line {line}: not valid {encoding} (byte {data[offset : offset + 1]!r} at file offset {offset}); "
            f"{hint}"
        ) from err


def custom_hint(encoding: str) -> str:
    """What to set for custom data that does not decode with ``encoding``."""
    return (
        f"set the custom data's encoding option to the file's encoding (custom: {{encoding: latin-1}} in YAML, "
        f"CustomData(encoding='cp1252') in Python; now {encoding!r}), or convert the file to UTF-8"
    )


BUILTIN_HINT = "the original files of the built-in datasets are UTF-8: this copy is damaged or not the original"
