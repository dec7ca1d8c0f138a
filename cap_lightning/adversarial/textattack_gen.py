"""Run a TextAttack recipe over a split against a victim and write the attacked split (jsonl), resumably.

The run itself (victim checks, cache key, chunks, split file, manifest) is the shared one of ``generator.py``; this
file holds what is specific to TextAttack. Order of work (every check that can fail comes before the expensive step
it protects):
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

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from cap_lightning.adversarial.environment import import_textattack, require_nltk, textattack_available
from cap_lightning.adversarial.format import AdversarialExample
from cap_lightning.adversarial.generator import (
    DEFAULT_CACHE,
    AttackGenerator,
    GenerationResult,
    LoadedVictim,
    Run,
    generate,
)
from cap_lightning.adversarial.metrics import RobustnessReport
from cap_lightning.adversarial.recipes import RecipeSpec, canonical_recipe, check_recipe
from cap_lightning.adversarial.source import Selection
from cap_lightning.classifier import predict_logits

FORMAT_VERSION = 2  # bump when the rows a description produces change


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


def _check_environment(recipe: str, allow_downloads: bool) -> RecipeSpec:
    """Checks 1–2 above: the recipe, the optional extra and the recipe's NLTK data."""
    spec = check_recipe(recipe, allow_downloads=allow_downloads)
    if not textattack_available():
        import_textattack()  # raises the install message
    require_nltk(spec.nltk, f"recipe {canonical_recipe(recipe)!r}")
    return spec


@dataclass
class TextAttackGenerator(AttackGenerator):
    """A TextAttack recipe as an :class:`~cap_lightning.adversarial.generator.AttackGenerator`.

    Attributes:
        recipe: short recipe name (``recipes.RECIPES``).
        query_budget: maximum victim queries per example (None: the recipe's default, unbounded).
        allow_downloads: accept recipes that need downloads.
    """

    recipe: str
    query_budget: int | None = None
    allow_downloads: bool = False

    def __post_init__(self) -> None:
        self._spec: RecipeSpec | None = None
        self._attack = None
        self._correct: list[bool] = []

    @property
    def spec(self) -> RecipeSpec:
        if self._spec is None:
            self._spec = _check_environment(self.recipe, self.allow_downloads)
        return self._spec

    def preflight(self) -> None:
        self._spec = _check_environment(self.recipe, self.allow_downloads)
        if self.query_budget is not None and self.query_budget < 1:
            raise ValueError(f"query_budget must be >= 1 or None, got {self.query_budget}")

    def describe(self, selection: Selection) -> dict:
        from importlib.metadata import version

        return {
            "generator": "textattack",
            "format_version": FORMAT_VERSION,
            "textattack_version": version("textattack"),
            "recipe": canonical_recipe(self.recipe),
            "recipe_class": self.spec.class_name,
            "query_budget": self.query_budget,
            "n": len(selection.indices),
        }

    def progress_label(self, selection: Selection) -> str:
        return f"{canonical_recipe(self.recipe)} on {selection.split}"

    def prepare(self, run: Run, victim: LoadedVictim) -> None:
        textattack = import_textattack()
        from cap_lightning.adversarial.environment import no_nltk_downloads

        with no_nltk_downloads():
            recipe_cls = getattr(textattack.attack_recipes, self.spec.class_name)
            wrapper = _make_wrapper(textattack, victim.model, victim.tokenizer, run.max_length, run.batch_size)
            attack = recipe_cls.build(wrapper)
        if self.query_budget is not None:
            attack.goal_function.query_budget = self.query_budget
        self._attack, self._correct = attack, victim.correct

    def attack(self, run: Run, positions: range) -> list[AdversarialExample]:
        recipe = canonical_recipe(self.recipe)
        rows = []
        for pos in positions:
            example, index = run.selection.examples[pos], run.selection.indices[pos]
            if not self._correct[pos]:
                rows.append(AdversarialExample(example.text, example.label, example.text, recipe, "skipped", 0, index))
                continue
            _seed_everything(example_seed(run.seed, index))
            result = self._attack.attack(example.text, example.label)
            status = _status(result)
            keep_output = status == "successful" or self.spec.kind == "input_reduction"
            text = result.perturbed_result.attacked_text.text if keep_output else example.text
            queries = int(result.perturbed_result.num_queries)
            rows.append(AdversarialExample(text, example.label, example.text, recipe, status, queries, index))
        return rows

    def manifest(self, run: Run, rows: list[AdversarialExample], report: RobustnessReport) -> dict:
        return {
            "victim": run.info.path,
            "victim_metrics": {k: (None if v != v else v) for k, v in report.as_dict().items()},  # NaN -> null
        }


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
    generator = TextAttackGenerator(recipe, query_budget, allow_downloads)
    return generate(
        generator, victim, selection, label_names, seed=seed, out=out, cache_dir=cache_dir, chunk_size=chunk_size,
        max_length=max_length, batch_size=batch_size, progress=progress,
    )  # fmt: skip
