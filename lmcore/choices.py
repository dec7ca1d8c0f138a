"""String options checked against the ``typing.Literal`` alias that types them, so the allowed values are written
once (in the type that also drives ``--help`` and YAML validation) and every error names the value and the choices.
"""

from __future__ import annotations

from typing import Any, get_args


def choices(alias: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` alias (nested Literals flattened)."""
    args = get_args(alias)
    if not args:
        raise TypeError(f"{alias!r} is not a typing.Literal alias")
    out: list[Any] = []
    for a in args:
        out.extend(choices(a) if get_args(a) else [a])
    return tuple(out)


def check_choice(name: str, value: Any, alias: Any) -> None:
    """Raise ``ValueError("<name> <value> is not one of (...)")`` unless ``value`` is one of ``alias``'s values."""
    allowed = choices(alias)
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {allowed}")
