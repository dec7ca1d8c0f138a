"""``CapDataModule``: full, few-shot and adversarial splits of a text-classification dataset, priors in collate.

Design decisions:
- Loading and splitting are pure functions (``load.py``, ``splits.py``); this class only wires them to
  Lightning. All file reading and validation happen in ``setup`` before any model is loaded.
- Priors are word-level (one tensor per training text, attached by ``PriorCacheCallback``) and broadcast to
  subwords in the collate function, which tokenizes on the fly with offsets (``tokens.py``). A teacher prior's
  gold-label ranks come with them (``gold_rank`` per row, for ``CapModule``'s ``prior_mask``).
- ``max_train_examples`` / ``max_eval_examples`` take a seeded subset, for short demo runs on a CPU: the prior of
  every training text is computed, so the subset must be taken before priors, not by ``limit_train_batches``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from cap_lightning.adversarial.format import read_adversarial_jsonl
from cap_lightning.datasets.custom import CustomData, check_custom
from cap_lightning.datasets.load import load_splits
from cap_lightning.datasets.prompt import TeacherPrompt
from cap_lightning.datasets.specs import SPECS, DatasetName
from cap_lightning.datasets.splits import LabelledSplits, TextExample, data_fingerprint, few_shot
from cap_lightning.tokens import batch_word_index, split_words, visible_word_counts, words_to_tokens
from lmcore.choices import check_choice
from lmcore.models import load_tokenizer

Split = Literal["full", "few_shot", "adversarial"]


class _Collate:
    """Tokenize a list of items; add ``word_index`` and, when every item has one, the subword ``prior`` and the
    teacher's ``gold_rank``."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[dict]) -> dict[str, Tensor]:
        enc, word_index = batch_word_index(self.tokenizer, [it["text"] for it in items], self.max_length)
        batch: dict[str, Tensor] = dict(enc)
        batch["labels"] = torch.tensor([it["label"] for it in items], dtype=torch.long)
        batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        batch["word_index"] = word_index
        if all("prior" in it for it in items):
            batch["prior"] = words_to_tokens([it["prior"] for it in items], word_index)
        if all("gold_rank" in it for it in items):
            batch["gold_rank"] = torch.tensor([it["gold_rank"] for it in items], dtype=torch.long)
        return batch


def _subset(examples: list[TextExample], n: int | None, seed: int) -> list[TextExample]:
    if n is None or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


class CapDataModule(L.LightningDataModule):
    """Text-classification data for attribution-prior training.

    Args:
        dataset: one of ``sst2, banking77, hwu64, clinc150, emotion``, or ``custom`` (your own files or hub id).
        data_dir: folder with the dataset's original files (e.g. ``../shared/data/banking77``); None loads the hub.
        model_path: tokenizer source; the CLI links it from ``model.init_args.model_path``.
        split: ``full`` | ``few_shot`` (``shots_per_class`` per class from train) | ``adversarial`` (full train;
            test = the attacked split file ``adversarial_file``).
        shots_per_class: k for ``few_shot``.
        seed: seeds the few-shot draw, the validation carve-out and the subsets.
        validation_fraction: share of train carved out as validation where a dataset has none.
        max_length: tokens per text (truncation).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        num_workers: DataLoader workers.
        max_train_examples: seeded subset of the training split (after few-shot), for short runs.
        max_eval_examples: seeded subset of validation and test, for short runs.
        adversarial_file: jsonl written by the adversarial generator (text, label, original_text, recipe, ...).
        custom: for ``dataset: custom``, your files or hub dataset (:class:`CustomData`; in YAML a mapping under
            ``custom:`` with keys ``train_file``, ``test_file``, ``label_names``, ``hub_id``, ...).
        teacher_prompt: the CAP teacher's prompt (``instruction``, ``text_prefix``, ``answer_prefix``); default: the
            built-in dataset's (its spec), none for custom data.
    """

    def __init__(
        self,
        dataset: DatasetName = "sst2",
        data_dir: str | None = None,
        model_path: str = "minilm",
        split: Split = "full",
        shots_per_class: int = 10,
        seed: int = 0,
        validation_fraction: float = 0.1,
        max_length: int = 64,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        adversarial_file: str | None = None,
        custom: CustomData | None = None,
        teacher_prompt: TeacherPrompt | None = None,
    ) -> None:
        super().__init__()
        # checkpoints are read weights-only (plain containers), so the typed options are stored as dicts
        typed = {"custom": custom, "teacher_prompt": teacher_prompt}
        self.save_hyperparameters(ignore=list(typed))
        self.save_hyperparameters({name: None if value is None else asdict(value) for name, value in typed.items()})
        check_choice("dataset", dataset, DatasetName)
        check_choice("split", split, Split)
        check_custom(dataset, custom)
        self.custom = custom
        self._teacher_prompt = teacher_prompt
        if split == "adversarial" and not adversarial_file:
            raise ValueError("split 'adversarial' needs adversarial_file (the attacked split jsonl)")
        if adversarial_file and not Path(adversarial_file).is_file():
            raise FileNotFoundError(
                f"adversarial_file {adversarial_file!r} does not exist; produce it with the adversarial generator first"
            )
        sizes = {"shots_per_class": shots_per_class, "max_length": max_length, "batch_size": batch_size}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        if data_dir is not None and not Path(data_dir).is_dir():
            raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder (set data_dir: null to load from the hub)")
        self.splits: LabelledSplits | None = None
        self.tokenizer = None
        self._train_priors: list[Tensor] | None = None
        self._train_gold_ranks: list[int] | None = None

    # ----------------------------------------------------------------------------------------------- loading
    def _load(self) -> LabelledSplits:
        if self.splits is not None:
            return self.splits
        h = self.hparams
        splits = load_splits(
            h.dataset, h.data_dir, validation_fraction=h.validation_fraction, seed=h.seed, custom=self.custom
        )
        train = splits.train
        if h.split == "few_shot":
            train = few_shot(train, h.shots_per_class, h.seed, label_names=splits.label_names)
        train = _subset(train, h.max_train_examples, h.seed)
        test = splits.test
        if h.split == "adversarial":
            test = [TextExample(r.text, r.label) for r in read_adversarial_jsonl(h.adversarial_file)]
            bad = sorted({e.label for e in test if not 0 <= e.label < splits.num_labels})
            if bad:
                raise ValueError(f"{h.adversarial_file}: labels {bad} outside 0..{splits.num_labels - 1}")
        validation = _subset(splits.validation, h.max_eval_examples, h.seed)
        test = _subset(test, h.max_eval_examples, h.seed)
        self.splits = replace(splits, train=train, validation=validation, test=test)
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        self._load()
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.hparams.model_path)

    @property
    def num_labels(self) -> int:
        return self._load().num_labels

    @property
    def label_names(self) -> list[str]:
        return self._load().label_names

    @property
    def teacher_prompt(self) -> TeacherPrompt | None:
        """The CAP teacher's prompt: the ``teacher_prompt`` argument, else the built-in dataset's, else None."""
        if self._teacher_prompt is not None or self.hparams.dataset == "custom":
            return self._teacher_prompt
        return SPECS[self.hparams.dataset].prompt

    @property
    def setting(self) -> str:
        """Short run label: ``full``, ``fs10`` (few-shot k=10) or ``adversarial``."""
        h = self.hparams
        return f"fs{h.shots_per_class}" if h.split == "few_shot" else h.split

    # ------------------------------------------------------------------------------------------------ priors
    def prior_inputs(self) -> tuple[list[str], list[int], str]:
        """Texts, labels and a content fingerprint of the training split, for ``PriorCacheCallback``."""
        train = self._load().train
        return [e.text for e in train], [e.label for e in train], data_fingerprint(train)

    def visible_word_counts(self, texts: Sequence[str]) -> list[int]:
        """How many leading words of each text the student reads within ``max_length`` tokens (for the priors)."""
        self.setup()
        return visible_word_counts(self.tokenizer, texts, self.hparams.max_length)

    @property
    def max_length(self) -> int:
        return self.hparams.max_length

    def attach_priors(self, priors: Sequence[Tensor], gold_rank: Sequence[int] | None = None) -> None:
        """Attach one word-level prior (n_words,) per training text, in ``prior_inputs`` order, and, for a teacher
        prior, the teacher's rank of each text's gold label (0 = the teacher picks it)."""
        train = self._load().train
        if len(priors) != len(train):
            raise ValueError(f"got {len(priors)} priors for {len(train)} training texts")
        if gold_rank is not None and len(gold_rank) != len(train):
            raise ValueError(f"got {len(gold_rank)} gold ranks for {len(train)} training texts")
        for i, (p, e) in enumerate(zip(priors, train, strict=True)):
            if p.shape != (len(split_words(e.text)),):
                raise ValueError(f"prior {i} has shape {tuple(p.shape)}, text has {len(split_words(e.text))} words")
        self._train_priors = list(priors)
        self._train_gold_ranks = None if gold_rank is None else [int(r) for r in gold_rank]

    @property
    def has_priors(self) -> bool:
        return self._train_priors is not None

    @property
    def has_gold_ranks(self) -> bool:
        return self._train_gold_ranks is not None

    # ------------------------------------------------------------------------------------------- dataloaders
    def _items(
        self, examples: list[TextExample], priors: list[Tensor] | None = None, gold_ranks: list[int] | None = None
    ) -> list[dict]:
        items = [{"text": e.text, "label": e.label, "index": i} for i, e in enumerate(examples)]
        if priors is not None:
            for item, p in zip(items, priors, strict=True):
                item["prior"] = p
        if priors is not None and gold_ranks is not None:
            for item, r in zip(items, gold_ranks, strict=True):
                item["gold_rank"] = r
        return items

    def _loader(self, items: list[dict], shuffle: bool, batch_size: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.seed) if shuffle else None
        return DataLoader(
            items,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.hparams.num_workers,
            collate_fn=_Collate(self.tokenizer, self.hparams.max_length),
        )

    def train_dataloader(self) -> DataLoader:
        items = self._items(self._load().train, self._train_priors, self._train_gold_ranks)
        return self._loader(items, shuffle=True, batch_size=self.hparams.batch_size)

    def _eval_loader(self, examples: list[TextExample]) -> DataLoader:
        return self._loader(self._items(examples), False, self.hparams.eval_batch_size or self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._load().validation)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._load().test)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self._load().test)
