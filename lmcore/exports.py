"""Lazy public names for a package's ``__init__``: ``__getattr__ = lazy_exports(__name__, {"Name": "pkg.module"})``.

A package can list its whole public surface while ``import package`` stays cheap (no torch, Lightning or
transformers until a name is used); each name is imported on first access and then cached in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    return __getattr__
