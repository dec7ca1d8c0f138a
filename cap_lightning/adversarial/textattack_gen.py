"""Run a TextAttack recipe over a split against a victim and write the attacked split (jsonl), resumably.

Order of work (every check that can fail comes before the expensive step it protects):
1. the recipe name (:func:`~cap_lightning.adversarial.recipes.check_recipe`): unknown → ``ValueError`` listing the
   known and offline recipes; needs downloads → ``RecipeUnavailableError`` naming what is missing;
2. the optional extra and the recipe's NLTK data (project-local ``nltk_data/``), without importing textattack;
3. the victim's label count against the data's, from metadata only;
4. the selected examples, the victim weights hash and the cache key; if every chunk is already on disk, the split
   file is merged without loading a model;
5. a clean pass of the victim over the selected texts: if it classifies none correctly there is nothing to attack,
   which is an error before any attack starts;
6. the attack, chunk by chunk (``chunks.py``): an interrupted run resumes from the finished chunks;
7. the split file, then ``<out>.manifest.json`` (cache key and description, victim metrics, SHA-256 of the set).

Design decisions:
- Only clean-correct examples are attacked (TextAttack's own rule); the others are written with status
  ``skipped`` and their clean text, without calling TextAttack. A ``failed`` attack also keeps the clean text: the
  split holds, per example, what the attack produced for evaluation, and an unsuccessful attack produced nothing.
- Every example is attacked under its own RNG seed, derived from ``(seed, source index)``, so a resumed run gives
  the same rows as an uninterrupted one.
- The victim is wrapped in a small ``ModelWrapper`` that truncates to ``max_length`` (the training length) and
  batches queries; the clean pass uses the same function, so both agree on what is correct.
- ``input_reduction`` is not a fooling attack: it removes words while the prediction stays the same. Its rows keep the
  reduced text with status ``failed`` (the victim is still right, by construction), so the status invariants hold for
  every recipe: ``successful`` ⇒ the victim is wrong on ``text``; ``failed`` ⇒ right; ``skipped`` ⇒ wrong on the
  clean text, which is kept.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cap_lightning.adversarial.chunks import ChunkStore, entry_key, run_chunks
from cap_lightning.adversarial.environment import import_textattack, require_nltk, textattack_available
from cap_lightning.adversarial.format import AdversarialExample, write_adversarial_jsonl
from cap_lightning.adversarial.metrics import RobustnessReport, robustness_from_statuses
from cap_lightning.adversarial.recipes import RecipeSpec, canonical_recipe, check_recipe
from cap_lightning.adversarial.source import Selection
from cap_lightning.adversarial.victim import check_label_count, inspect_victim, load_and_check_victim
from cap_lightning.classifier import predict_logits, weights_sha256
from lmcore.io import atomic_write_text

FORMAT_VERSION = 2  # bump when the rows a description produces change
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
    """

    out: Path
    rows: list[AdversarialExample]
    report: RobustnessReport
    key: str
    chunks_computed: int
    wall_s: float
    description: dict = field(default_factory=dict)


def example_seed(seed: int, index: int) -> int:
    """Deterministic per-example seed, independent of chunking and resumption."""
    return zlib.crc32(f"{seed}:{index}".encode())


def _seed_everything(value: int) -> None:
    import numpy as np
    import torch

    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _make_wrapper(textattack, model, tokenizer, max_length: int, batch_size: int):
    class CapClassifierWrapper(textattack.models.wrappers.ModelWrapper):
        """Batched logits of a HF classifier, truncated to the training length."""

        def __init__(self) -> None:
            self.model = model
            self.tokenizer = tokenizer

        def __call__(self, text_input_list, **kwargs):
            return predict_logits(self.model, self.tokenizer, list(text_input_list), max_length, batch_size)

    return CapClassifierWrapper()


def _status(result) -> str:
    name = type(result).__name__
    if name == "SkippedAttackResult":
        return "skipped"
    if name == "SuccessfulAttackResult":
        return "successful"
    return "failed"  # FailedAttackResult, and MaximizedAttackResult of input_reduction (prediction kept)


def preflight(victim: str, num_labels: int, recipe: str, allow_downloads: bool = False) -> RecipeSpec:
    """Checks 1–3 above; raises before anything heavy is imported or loaded."""
    spec = check_recipe(recipe, allow_downloads=allow_downloads)
    if not textattack_available():
        import_textattack()  # raises the install message
    require_nltk(spec.nltk, f"recipe {canonical_recipe(recipe)!r}")
    check_label_count(inspect_victim(victim), num_labels, "the data")
    return spec


def generate_textattack(
    victim: str,
    selection: Selection,
    label_names: list[str],
    recipe: str,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    cache_dir: str | Path = DEFAULT_CACHE,
    chunk_size: int = 10,
    query_budget: int | None = None,
    max_length: int = 64,
    batch_size: int = 32,
    allow_downloads: bool = False,
    progress: bool = True,
) -> GenerationResult:
    """Attack ``selection`` with ``recipe`` against ``victim`` and write the attacked split atomically.

    Args:
        victim: a ``CapModule`` ``.ckpt`` or a saved HF classifier folder.
        selection: the clean examples (:func:`~cap_lightning.adversarial.source.select_examples`).
        label_names: the dataset's label names (their count must match the victim's).
        recipe: short recipe name (``recipes.RECIPES``).
        seed: seeds each example's attack (with its index).
        out: the split file; default ``<cache_dir>/<key>/split.jsonl``.
        cache_dir: root of the resumable cache.
        chunk_size: examples per chunk file (the unit of resumption).
        query_budget: maximum victim queries per example (None: the recipe's default, unbounded).
        max_length: tokens per text given to the victim.
        batch_size: victim batch size.
        allow_downloads: accept recipes that need downloads.
        progress: show a progress bar.
    """
    start = time.perf_counter()
    spec = preflight(victim, len(label_names), recipe, allow_downloads)
    if query_budget is not None and query_budget < 1:
        raise ValueError(f"query_budget must be >= 1 or None, got {query_budget}")
    info = inspect_victim(victim)
    from importlib.metadata import version

    description = {
        "generator": "textattack",
        "format_version": FORMAT_VERSION,
        "textattack_version": version("textattack"),
        "recipe": canonical_recipe(recipe),
        "recipe_class": spec.class_name,
        "query_budget": query_budget,
        "victim_sha256": weights_sha256(info.path),
        "data_fingerprint": selection.fingerprint(),
        "split": selection.split,
        "n": len(selection.indices),
        "label_names": list(label_names),
        "seed": seed,
        "max_length": max_length,
        "chunk_size": chunk_size,
    }
    key = entry_key(description)
    store = ChunkStore(Path(cache_dir) / key, description, len(selection.indices), chunk_size)
    index_of = selection.indices.__getitem__
    state: dict = {}

    def prepare() -> None:
        model, tokenizer, pred, correct = load_and_check_victim(info, victim, selection, max_length, batch_size)
        textattack = import_textattack()
        from cap_lightning.adversarial.environment import no_nltk_downloads

        with no_nltk_downloads():
            recipe_cls = getattr(textattack.attack_recipes, spec.class_name)
            attack = recipe_cls.build(_make_wrapper(textattack, model, tokenizer, max_length, batch_size))
        if query_budget is not None:
            attack.goal_function.query_budget = query_budget
        state.update(attack=attack, correct=correct)

    def process(positions: range) -> list[AdversarialExample]:
        if not state:
            prepare()
        rows = []
        for pos in positions:
            example, index = selection.examples[pos], selection.indices[pos]
            if not state["correct"][pos]:
                rows.append(
                    AdversarialExample(example.text, example.label, example.text, key_recipe, "skipped", 0, index)
                )
                continue
            _seed_everything(example_seed(seed, index))
            result = state["attack"].attack(example.text, example.label)
            status = _status(result)
            keep_output = status == "successful" or spec.kind == "input_reduction"
            text = result.perturbed_result.attacked_text.text if keep_output else example.text
            queries = int(result.perturbed_result.num_queries)
            rows.append(AdversarialExample(text, example.label, example.text, key_recipe, status, queries, index))
        return rows

    key_recipe = canonical_recipe(recipe)
    rows, computed = run_chunks(store, index_of, process, desc=f"{key_recipe} on {selection.split}", progress=progress)
    target = Path(out) if out is not None else store.folder / "split.jsonl"
    write_adversarial_jsonl(target, rows)
    report = robustness_from_statuses([r.status for r in rows])
    manifest = {
        "key": key,
        "description": description,
        "victim": info.path,
        "victim_metrics": {k: (None if v != v else v) for k, v in report.as_dict().items()},  # NaN -> null
        "set_sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    atomic_write_text(target.with_name(target.name + ".manifest.json"), json.dumps(manifest, indent=2, default=str))
    return GenerationResult(target, rows, report, key, computed, time.perf_counter() - start, description)
