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
