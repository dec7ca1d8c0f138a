"""One generator protocol for attacked splits: the shared run, with each generator's own steps as override points.

:func:`generate` runs every generator (TextAttack recipes, LLM keyword injection) the same way:

1. ``generator.preflight()``: its own cheap checks (names, optional extras, settings), before anything is loaded;
2. the victim, described from metadata only, and its label count against the data's;
3. the cache key: SHA-256 of ``generator.describe()`` plus what every generator shares (victim weights hash,
   selection fingerprint, split, label names, seed, max length, chunk size); a different key never reuses rows;
4. the rows, chunk by chunk (``chunks.py``): an interrupted run resumes from the finished chunks. Only when a chunk
   must be computed is the victim loaded and run over the clean texts (refusing a selection it gets entirely wrong:
   nothing to attack), then ``generator.prepare(run, victim)`` loads what ``generator.attack(run, positions)`` needs;
5. ``generator.check(run, rows)``, then the split file (atomically) and ``<out>.manifest.json``: the key, the
   description, ``generator.manifest(run, rows, report)`` and the SHA-256 of the written set;
6. a :class:`GenerationResult`.

A new generator subclasses :class:`AttackGenerator` and implements ``describe``, ``prepare`` and ``attack``.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cap_lightning.adversarial.chunks import ChunkStore, entry_key, run_chunks
from cap_lightning.adversarial.format import AdversarialExample, write_adversarial_jsonl
from cap_lightning.adversarial.metrics import RobustnessReport, robustness_from_statuses
from cap_lightning.adversarial.source import Selection
from cap_lightning.adversarial.victim import check_label_count, inspect_victim, load_and_check_victim
from cap_lightning.classifier import ClassifierInfo, weights_sha256
from lmcore.io import atomic_write_json

DEFAULT_CACHE = "cache/adversarial"


@dataclass
class GenerationResult:
    """What a generation run produced.

    Attributes:
        out: the attacked split file.
        rows: its rows.
        report: generation-time metrics against the victim (from the statuses).
        key: cache key of the entry.
        chunks_computed: chunks computed in this call (0 = everything came from the cache).
        wall_s: seconds spent in this call.
        description: what the key hashes.
    """

    out: Path
    rows: list[AdversarialExample]
    report: RobustnessReport
    key: str
    chunks_computed: int
    wall_s: float
    description: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """What every step of one generation run sees.

    Attributes:
        victim: the victim as given (a ``.ckpt`` or an HF folder).
        info: its metadata.
        selection: the clean examples.
        label_names: the dataset's label names.
        seed: the run's seed.
        max_length: tokens per text given to the victim.
        batch_size: victim batch size.
        store: the cache entry's chunk files (side files of a generator go into ``store.folder``).
    """

    victim: str
    info: ClassifierInfo
    selection: Selection
    label_names: list[str]
    seed: int
    max_length: int
    batch_size: int
    store: ChunkStore


@dataclass(frozen=True)
class LoadedVictim:
    """The victim, loaded, and which selected examples it classifies correctly (aligned with the selection)."""

    model: Any
    tokenizer: Any
    correct: list[bool]


class AttackGenerator(ABC):
    """The per-generator steps of :func:`generate`; everything else is shared."""

    #: names the data in the label-count error (``"... has 2 labels but <label_source> has 3"``)
    label_source: str = "the data"

    def preflight(self) -> None:  # noqa: B027 (optional hook)
        """Cheap checks before the victim is inspected; raise on bad input (default: none)."""

    @abstractmethod
    def describe(self, selection: Selection) -> dict:
        """This generator's part of the cache key: its name, format version, settings and identities."""

    def progress_label(self, selection: Selection) -> str:
        """The progress bar's label."""
        return type(self).__name__

    @abstractmethod
    def prepare(self, run: Run, victim: LoadedVictim) -> None:
        """Load what :meth:`attack` needs; called once, only when a chunk has to be computed."""

    @abstractmethod
    def attack(self, run: Run, positions: range) -> list[AdversarialExample]:
        """The rows of the selected examples at ``positions`` (one chunk)."""

    def check(self, run: Run, rows: list[AdversarialExample]) -> None:  # noqa: B027 (optional hook)
        """Refuse the merged rows before they are written (default: accept)."""

    def manifest(self, run: Run, rows: list[AdversarialExample], report: RobustnessReport) -> dict:
        """This generator's manifest fields, between the description and the set's SHA-256 (default: none)."""
        return {}


def generate(
    generator: AttackGenerator,
    victim: str,
    selection: Selection,
    label_names: list[str],
    *,
    seed: int = 0,
    out: str | Path | None = None,
    cache_dir: str | Path = DEFAULT_CACHE,
    chunk_size: int = 10,
    max_length: int = 64,
    batch_size: int = 32,
    progress: bool = True,
) -> GenerationResult:
    """Run ``generator`` over ``selection`` against ``victim`` and write the attacked split; see the module doc.

    Args:
        generator: the generator's own steps.
        victim: a ``CapModule`` ``.ckpt`` or a saved HF classifier folder.
        selection: the clean examples (:func:`~cap_lightning.adversarial.source.select_examples`).
        label_names: the dataset's label names (their count must match the victim's).
        seed: the run's seed (part of the key).
        out: the split file; default ``<cache_dir>/<key>/split.jsonl``.
        cache_dir: root of the resumable cache.
        chunk_size: examples per chunk file (the unit of resumption).
        max_length: tokens per text given to the victim.
        batch_size: victim batch size.
        progress: show a progress bar.
    """
    start = time.perf_counter()
    generator.preflight()
    info = inspect_victim(victim)
    check_label_count(info, len(label_names), generator.label_source)
    description = {
        **generator.describe(selection),
        "victim_sha256": weights_sha256(info.path),
        "data_fingerprint": selection.fingerprint(),
        "split": selection.split,
        "label_names": list(label_names),
        "seed": seed,
        "max_length": max_length,
        "chunk_size": chunk_size,
    }
    key = entry_key(description)
    store = ChunkStore(Path(cache_dir) / key, description, len(selection.indices), chunk_size)
    run = Run(victim, info, selection, list(label_names), seed, max_length, batch_size, store)
    prepared = False

    def attack(positions: range) -> list[AdversarialExample]:
        nonlocal prepared
        if not prepared:
            model, tokenizer, _, correct = load_and_check_victim(info, victim, selection, max_length, batch_size)
            generator.prepare(run, LoadedVictim(model, tokenizer, correct))
            prepared = True
        return generator.attack(run, positions)

    label = generator.progress_label(selection)
    rows, computed = run_chunks(store, selection.indices.__getitem__, attack, desc=label, progress=progress)
    generator.check(run, rows)
    target = Path(out) if out is not None else store.folder / "split.jsonl"
    write_adversarial_jsonl(target, rows)
    report = robustness_from_statuses([r.status for r in rows])
    manifest = {
        "key": key,
        "description": description,
        **generator.manifest(run, rows, report),
        "set_sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    atomic_write_json(target.with_name(target.name + ".manifest.json"), manifest, default=str)
    return GenerationResult(target, rows, report, key, computed, time.perf_counter() - start, description)
