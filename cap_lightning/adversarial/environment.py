"""Import TextAttack offline: project-local NLTK data, no downloads, clear errors when the extra is missing.

Design decisions:
- TextAttack is an optional extra (``scripts/setup_textattack.sh``, docs/environment.md §6). Nothing in
  ``cap_lightning`` imports it at module level; :func:`import_textattack` is the one door, used lazily.
- NLTK data lives in a project-local folder: ``$CAP_NLTK_DATA`` if set, else ``<repo>/nltk_data``. It is prepended
  to ``NLTK_DATA`` and ``nltk.data.path`` before ``nltk`` reads anything, so no user or system set-up is needed.
- Never download at import time: textattack's first import calls ``nltk.download`` (averaged_perceptron_tagger,
  omw, wordnet, ...) and ``WordSwapWordNet`` calls ``nltk.download("omw-1.4")``. While textattack is imported and
  its recipes are built, ``nltk.download`` is replaced by a local-only check that returns whether the resource is
  already present and never touches the network (those resources are optional for the recipes run here).
- Which resources a recipe needs is data (:data:`RECIPE_NLTK`), so a missing one is reported by name, with the
  command that installs it, before any model loads.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_COMMAND = "make install-adversarial  (= scripts/setup_textattack.sh .venv)"

# NLTK resource name -> files inside an nltk_data folder (nltk 3.10's WordNet reader opens all three at start-up)
NLTK_RESOURCES: dict[str, tuple[str, ...]] = {
    "stopwords": ("corpora/stopwords/english",),
    "wordnet": ("corpora/wordnet/lexnames", "corpora/wordnet/index.sense", "corpora/wordnet/data.noun"),
}


def nltk_data_dir() -> Path:
    """The project's NLTK data folder: ``$CAP_NLTK_DATA`` or ``<repo>/nltk_data``."""
    return Path(os.environ.get("CAP_NLTK_DATA", REPO_ROOT / "nltk_data")).expanduser().resolve()


def configure_nltk_path() -> Path:
    """Put the project's NLTK folder first on ``NLTK_DATA`` and, if nltk is imported, on ``nltk.data.path``."""
    folder = str(nltk_data_dir())
    current = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if folder not in current:
        os.environ["NLTK_DATA"] = os.pathsep.join([folder, *current])
    try:
        import nltk
    except ModuleNotFoundError:
        return Path(folder)
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)
    return Path(folder)


def nltk_status(names: Sequence[str] = tuple(NLTK_RESOURCES)) -> dict[str, bool]:
    """Which of the NLTK resources ``names`` are installed (searched on ``nltk.data.path``, project folder first)."""
    unknown = sorted(set(names) - set(NLTK_RESOURCES))
    if unknown:
        raise ValueError(f"unknown NLTK resources {unknown}; known: {sorted(NLTK_RESOURCES)}")
    configure_nltk_path()
    import nltk

    status = {}
    for name in names:
        try:
            for path in NLTK_RESOURCES[name]:
                nltk.data.find(path)
            status[name] = True
        except LookupError:
            status[name] = False
    return status


def require_nltk(names: Sequence[str], what: str) -> None:
    """Raise a clear error naming the missing NLTK resources ``names`` needed by ``what``."""
    missing = [name for name, ok in nltk_status(names).items() if not ok]
    if missing:
        raise RuntimeError(
            f"{what} needs the NLTK data {missing}, not found in {nltk_data_dir()} (or on NLTK_DATA). "
            f"Install it with: {SETUP_COMMAND}"
        )


def textattack_available() -> bool:
    """Whether the textattack package (and the flair stub) are importable, without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in ("textattack", "flair", "nltk"))


@contextlib.contextmanager
def no_nltk_downloads() -> Iterator[None]:
    """Replace ``nltk.download`` by a local lookup that never touches the network (restored on exit)."""
    import nltk

    original = nltk.download

    def local_only(info_or_id=None, *args, **kwargs) -> bool:
        name = str(info_or_id)
        for prefix in ("corpora", "taggers", "tokenizers", "misc", "help"):
            try:
                nltk.data.find(f"{prefix}/{name}")
                return True
            except LookupError:
                continue
        log.debug("skipped nltk.download(%r): not installed locally, downloads are disabled", name)
        return False

    nltk.download = local_only
    try:
        yield
    finally:
        nltk.download = original


def import_textattack():
    """Import and return ``textattack`` with the project's NLTK data and downloads blocked.

    Raises:
        ModuleNotFoundError: the optional extra is not installed (the message gives the install command).
        RuntimeError: the NLTK stopwords that ``import textattack`` reads are missing.
    """
    if not textattack_available():
        raise ModuleNotFoundError(
            "TextAttack (optional adversarial extra) is not installed in this environment. "
            f"Install it beside transformers 5 with: {SETUP_COMMAND}"
        )
    require_nltk(["stopwords"], "import textattack")
    with no_nltk_downloads():
        return importlib.import_module("textattack")
