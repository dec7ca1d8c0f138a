"""``import steering`` is cheap (public names load on first use), and every public name resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_steering_loads_no_submodule_torch_or_lightning():
    loaded = _loaded_after("import steering")
    assert {m for m in loaded if m.startswith("steering")} == {"steering"}
    assert not {"torch", "lightning", "transformers"} & loaded


def test_every_public_name_resolves():
    import steering

    assert len(set(steering.__all__)) == len(steering.__all__)
    for name in steering.__all__:
        assert getattr(steering, name) is not None, name
    assert "SteeringModule" in dir(steering)


def test_options_are_checked_against_their_literal_alias():
    """Option values are validated by ``lmcore.choices.check_choice`` against the one ``Literal`` alias that types
    them, never by a hand-written ``X is not one of (...)`` check that can drift from the type."""
    offenders = [
        f"{path.relative_to(REPO)}:{i}"
        for path in sorted((REPO / "steering").rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "is not one of" in line
    ]
    assert offenders == []


def test_the_literal_aliases_match_the_tables():
    from typing import get_args

    from steering.data import EvalSplit
    from steering.loading import DTYPES, DType
    from steering.methods import METHODS, MethodName
    from steering.tasks import TASKS, TaskName

    assert set(get_args(TaskName)) == set(TASKS) and set(get_args(MethodName)) == set(METHODS)
    assert set(get_args(DType)) == set(DTYPES) and get_args(EvalSplit) == ("test", "dev")
