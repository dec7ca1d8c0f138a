import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_cap_lightning_never_imports_steering():
    import_all = "import cap_lightning as c; [getattr(c, n) for n in c.__all__ if n != '__version__']"
    assert not {m for m in _loaded_after(import_all) if m.split(".")[0] == "steering"}


def test_cap_lightning_models_is_light():
    loaded = _loaded_after("import lmcore.models")
    assert not {"lightning", "transformers", "torch"} & loaded
