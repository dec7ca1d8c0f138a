"""``SteeringDataModule``: one task's examples split into disjoint, seeded steering / dev / test sets.

Design decisions:
- The split is a seeded permutation of the task's rows: the first ``n_steer`` rows are the steering set (``predict``
  extracts from them), the next ``n_dev`` the dev set (choosing layer, α, k), the next ``n_test`` (default: the rest)
  the test set. Disjoint by construction; ``split_record()`` (sizes, seed, row ids, hash) is stored with the vector
  and the test results.
- Cross-fitted dev / test partitions (``split_seed`` with ``n_folds``): the steering rows stay those of ``seed``;
  the other rows (in ``seed``'s order) are dealt into ``n_folds`` disjoint folds; split seed s tests on fold s (its
  first ``n_test`` rows when given) and draws its ``n_dev`` dev rows from the other folds with a generator seeded by
  (``seed``, s). Split seeds 0 … n_folds − 1 therefore test on disjoint questions (their results can be pooled over
  questions) with the same steering vectors, and each one's dev rows never touch its own test rows.
- Items carry their index within the split, so the prediction writer and the test metrics can drop the duplicates
  distributed samplers add. Batches are ``{"index": (B,), "examples": [MCExample]}``.
- The tokenizer (for the chat template) is loaded from ``model_path`` (linked from the module by the CLI); no model
  weights are touched here, so bad data fails before a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lmcore.choices import check_choice, choices
from steering.tasks import NEEDS_MODEL_PATH, GenExample, MCExample, TaskName, load_task

EvalSplit = Literal["test", "dev"]
EVAL_SPLITS = choices(EvalSplit)


class IndexedExamples(Dataset):
    """A split as a map-style dataset of ``{"index": i, "example": MCExample}``."""

    def __init__(self, examples: list[MCExample | GenExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "example": self.examples[i]}


def collate_examples(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"index": torch.tensor([it["index"] for it in items]), "examples": [it["example"] for it in items]}


def split_indices(
    n: int, n_steer: int, n_dev: int, n_test: int | None, seed: int, split_seed: int | None = None,
    n_folds: int | None = None,
) -> dict[str, list[int]]:  # fmt: skip
    """Disjoint row ids for steer / dev / test from a seeded permutation of ``range(n)``; with ``split_seed`` and
    ``n_folds``, the cross-fitted partition of the non-steering rows (module docstring)."""
    if (split_seed is None) != (n_folds is None):
        raise ValueError(f"split_seed {split_seed} and n_folds {n_folds} go together: give both or neither")
    if split_seed is not None:
        return _fold_split(n, n_steer, n_dev, n_test, seed, split_seed, n_folds)
    need = n_steer + n_dev + (n_test or 0)
    if need > n or (n_test is None and n_steer + n_dev >= n):
        raise ValueError(f"n_steer {n_steer} + n_dev {n_dev} + n_test {n_test} exceeds the {n} examples of the task "
                         "(n_test=None takes the rest, which must be non-empty)")  # fmt: skip
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    end = n_steer + n_dev + (n_test if n_test is not None else n - n_steer - n_dev)
    return {"steer": perm[:n_steer], "dev": perm[n_steer : n_steer + n_dev], "test": perm[n_steer + n_dev : end]}


def _fold_split(
    n: int, n_steer: int, n_dev: int, n_test: int | None, seed: int, split_seed: int, n_folds: int
) -> dict[str, list[int]]:
    if n_folds < 2:
        raise ValueError(f"n_folds {n_folds} must be >= 2 (the dev rows of a split seed come from the other folds)")
    if not 0 <= split_seed < n_folds:
        raise ValueError(f"split_seed {split_seed} must be in 0 … n_folds − 1 = {n_folds - 1}: it names the test fold")
    if n_steer >= n:
        raise ValueError(f"n_steer {n_steer} leaves none of the {n} examples of the task for dev / test")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    pool = perm[n_steer:]
    folds = [pool[f::n_folds] for f in range(n_folds)]
    test = folds[split_seed]
    if n_test is not None:
        if n_test > len(test):
            raise ValueError(f"n_test {n_test} exceeds the {len(test)} rows of test fold {split_seed} ({n} examples, "
                             f"n_steer {n_steer}, n_folds {n_folds})")  # fmt: skip
        test = test[:n_test]
    others = [i for f, fold in enumerate(folds) if f != split_seed for i in fold]
    if n_dev > len(others):
        raise ValueError(f"n_dev {n_dev} exceeds the {len(others)} rows outside test fold {split_seed}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + split_seed)
    dev = [others[i] for i in torch.randperm(len(others), generator=g)[:n_dev].tolist()]
    return {"steer": perm[:n_steer], "dev": dev, "test": test}


class SteeringDataModule(L.LightningDataModule):
    def __init__(
        self,
        model_path: str = "smollm2-135m",
        task: str = "truthfulqa",
        task_args: dict[str, Any] | None = None,
        chat_template: bool = False,
        n_steer: int = 50,
        pairs_per_question: int = 1,
        n_dev: int = 100,
        n_test: int | None = None,
        eval_split: EvalSplit = "test",
        seed: int = 0,
        split_seed: int | None = None,
        n_folds: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        """Contrastive pairs (steering split) and MC examples (dev / test splits) of one task.

        Args:
            model_path: tokenizer source (linked from ``model.init_args.model_path``).
            task: one of ``steering.tasks.TASKS``.
            task_args: loader options, e.g. ``{"data_dir": "../shared/data/truthfulqa", "variant": "mc"}``.
            chat_template: wrap questions in the tokenizer's chat template.
            n_steer: steering examples (>= 1). n_dev: dev examples. n_test: test examples (None = the rest).
            pairs_per_question: steering pairs per multiple-choice question: its own (true, false) pair, then other
                true × false combinations of its answer lists (``MCExample.with_pairs``), up to this many.
            eval_split: which split ``test`` evaluates (``dev`` for selection runs).
            seed: seed of the split permutation.
            split_seed: with ``n_folds``: one cross-fitted dev / test partition (module docstring): test = fold
                ``split_seed`` of the non-steering rows, dev drawn from the other folds; the steering rows stay
                ``seed``'s. None: dev and test are the next ``n_dev`` / ``n_test`` rows of the permutation.
            n_folds: number of disjoint test folds (>= 2) when ``split_seed`` is given.
            batch_size: steering examples per predict step. eval_batch_size: examples per test step.
            num_workers: DataLoader workers.
        """
        super().__init__()
        self.save_hyperparameters()
        check_choice("task", task, TaskName)
        if n_steer < 1:
            raise ValueError(f"n_steer {n_steer} must be >= 1: the steering set cannot be empty")
        if pairs_per_question < 1:
            raise ValueError(f"pairs_per_question {pairs_per_question} must be >= 1")
        if n_dev < 0 or (n_test is not None and n_test < 1):
            raise ValueError(f"n_dev {n_dev} must be >= 0 and n_test {n_test} >= 1 (or None for the rest)")
        check_choice("eval_split", eval_split, EvalSplit)
        if (split_seed is None) != (n_folds is None):
            raise ValueError(f"split_seed {split_seed} and n_folds {n_folds} go together: give both or neither")
        if n_folds is not None and (n_folds < 2 or not 0 <= split_seed < n_folds):
            raise ValueError(f"n_folds {n_folds} must be >= 2 and split_seed {split_seed} in 0 … n_folds − 1")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self.hparams, name) < 1:
                raise ValueError(f"{name} {getattr(self.hparams, name)} must be >= 1")
        self.splits: dict[str, list[MCExample | GenExample]] = {}
        self.indices: dict[str, list[int]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from lmcore.models import load_tokenizer

        hp = self.hparams
        tokenizer = load_tokenizer(hp.model_path)
        options = dict(hp.task_args or {})
        if hp.task in ("truthfulqa", "pairs_file", "toxigen", "faitheval"):
            options.setdefault("chat_template", hp.chat_template)
        if hp.task in NEEDS_MODEL_PATH:
            options.setdefault("model_path", hp.model_path)
        examples = load_task(hp.task, tokenizer, **options)
        if not examples:
            raise ValueError(f"task {hp.task!r} with {options} has no examples: the steering set would be empty")
        self.indices = split_indices(len(examples), hp.n_steer, hp.n_dev, hp.n_test, hp.seed, hp.split_seed,
                                     hp.n_folds)  # fmt: skip
        self.splits = {name: [examples[i] for i in ids] for name, ids in self.indices.items()}
        if hp.pairs_per_question > 1:  # one item per steering pair; dev / test keep one item per question
            self.splits["steer"] = [
                item for i, ex in zip(self.indices["steer"], self.splits["steer"])
                for item in (ex.with_pairs(hp.pairs_per_question, hp.seed + i) if isinstance(ex, MCExample) else [ex])
            ]  # fmt: skip

    def split_record(self) -> dict[str, Any]:
        """Sizes, seed, task and the row ids of each split (plus their hash), for the run record."""
        ids = json.dumps(self.indices, sort_keys=True)
        return {
            "task": self.hparams.task, "task_args": self.hparams.task_args, "chat_template": self.hparams.chat_template,
            "seed": self.hparams.seed, "split_seed": self.hparams.split_seed, "n_folds": self.hparams.n_folds,
            "sizes": {k: len(v) for k, v in self.indices.items()},
            "rows": self.indices, "rows_hash": hashlib.sha256(ids.encode()).hexdigest()[:16],
        }  # fmt: skip

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        return DataLoader(IndexedExamples(self.splits[split]), batch_size=batch_size, shuffle=False,
                          collate_fn=collate_examples, num_workers=self.hparams.num_workers)  # fmt: skip

    def predict_dataloader(self) -> DataLoader:
        return self._loader("steer", self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        split = self.hparams.eval_split
        if not self.splits[split]:
            raise ValueError(f"the {split} split is empty (n_{split}=0); nothing to evaluate")
        return self._loader(split, self.hparams.eval_batch_size)
