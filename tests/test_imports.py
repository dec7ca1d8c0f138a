"""The one-way import rule (docs/architecture.md): ``lmcore`` imports neither package; ``cap_lightning`` and
``steering`` import ``lmcore`` and never each other. Checked on the source of every file, imports inside functions
included, and on what actually loads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lmcore", "cap_lightning", "steering")
FORBIDDEN = {"lmcore": {"cap_lightning", "steering"}, "cap_lightning": {"steering"}, "steering": {"cap_lightning"}}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import statement in ``path``, at any depth, plus dotted strings handed to
    ``importlib.import_module``."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, a.name.split(".")[0]) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add((node.lineno, node.args[0].value.split(".")[0]))
    return found


def violations(root: Path) -> list[str]:
    out = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, name in sorted(imported_packages(path)):
                if name in forbidden:
                    out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return out


def test_no_package_imports_a_package_it_must_not():
    assert violations(REPO) == []


@pytest.mark.parametrize(
    "package, statement",
    [
        ("cap_lightning", "import os"),
        ("cap_lightning", "def f():\n    from steering.hooks import steer\n"),
        ("steering", "import importlib\nimportlib.import_module('cap_lightning.models')\n"),
        ("lmcore", "import cap_lightning.module"),
    ],
)
def test_the_checker_finds_an_import_anywhere(tmp_path, package, statement):
    (tmp_path / package).mkdir()
    (tmp_path / package / "m.py").write_text(statement)
    assert bool(violations(tmp_path)) == (statement != "import os")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_cap_lightning_never_loads_steering():
    import_all = "import cap_lightning as c; [getattr(c, n) for n in c.__all__ if n != '__version__']"
    assert not {m for m in _loaded_after(import_all) if m.split(".")[0] == "steering"}


def test_lmcore_models_is_light():
    loaded = _loaded_after("import lmcore.models")
    assert not {"lightning", "transformers", "torch"} & loaded


def test_architecture_page_names_every_module():
    """docs/architecture.md is the newcomers' map: every module of the three packages appears on it by name."""
    page = (REPO / "docs" / "architecture.md").read_text()
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO / package)
            if rel.name in ("__init__.py", "__main__.py"):
                continue
            dotted = ".".join((package, *rel.with_suffix("").parts))
            if f"`{rel.name}`" not in page and f"`{dotted}`" not in page and f", `{rel.name}`" not in page:
                missing.append(str(path.relative_to(REPO)))
    assert missing == []
