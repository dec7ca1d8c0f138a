"""The Makefile's ``steering.reproduce`` commands as argv lists, its variables expanded (``$(ARGS)``: empty)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def makefile_variables(text: str) -> dict[str, str]:
    """``NAME = value`` / ``NAME ?= value`` definitions (continuation lines joined)."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^([A-Z_]+)\s*\??=\s*(.*)$", text, re.M)}


def expand(line: str, variables: dict[str, str]) -> str:
    for _ in range(8):  # nested definitions
        line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], "") if m[1] != "ARGS" else "", line)
    return line


def reproduce_commands(needle: str) -> list[list[str]]:
    """Every ``-m steering.reproduce`` command of the Makefile whose expanded line contains ``needle``."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    variables = makefile_variables(text)
    lines = [expand(x, variables) for x in text.splitlines() if "-m steering.reproduce" in x]
    return [shlex.split(x.split("-m steering.reproduce", 1)[1]) for x in lines if needle in x]
