"""``HeldOutPriorCallback``: the same prior computed on held-out test texts, so agreement is measured off the
training data (docs/cap.md §3.4, "Agreement with the prior").

``PriorCacheCallback`` attaches priors to the training texts only, so ρ(student IG, prior) on them asks whether the
student fits the targets it was trained on. This callback computes the prior, as configured, on a seeded
stratified subset of the test split (``cap_lightning.stratified``) and hands it to the module, which then reports
``test/heldout_spearman`` and ``test/heldout_topk_iou``: ρ and top-k IoU between the model's IG of the gold label
and the prior on texts no model trained on. It works for every model, the CE-only baseline (``prior_weight: 0``, no
``PriorCacheCallback``) included; one callback per prior, told apart by ``name``.

Design decisions:
- Runs in ``setup("test")`` (nothing happens during ``fit``, so training is unchanged), after the data module's
  ``setup``. The prior is prepared exactly as for training, on the training split (its reference SLM fine-tuned on
  the training texts, never on the test texts), then scores the held-out texts w.r.t. their gold labels.
- As in training, each text is cut to the words the student reads (``visible.py``), the rest get prior 0.
- Cached like the training priors: one file under ``<cache_dir>/<key>/``, key = the prior's cache key, the training
  and the held-out fingerprints, label names, split setting, truncation, package version. Rank 0 computes under the
  entry's file lock; the other ranks wait at a barrier, then read the file. Computation runs under a forked RNG.
- The module receives ``{test row index: word prior}`` through ``attach_held_out_priors(name, priors)``; rows are
  matched by the batch's ``index`` (the row's position in the test split), so batch order does not matter.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from cap_lightning import __version__
from cap_lightning.datasets.splits import data_fingerprint
from cap_lightning.priors.base import AttributionPrior
from cap_lightning.priors.cache import MERGED, cache_key, load_priors, save_priors
from cap_lightning.priors.visible import pad_to_words, visible_texts
from cap_lightning.stratified import stratified_rows
from cap_lightning.tokens import split_words
from lmcore.locks import entry_lock

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class HeldOutPriorCallback(L.Callback):
    """Compute a prior on a stratified subset of the test split and attach it to the module for agreement.

    Args:
        prior: the prior source, configured as for training (any ``AttributionPrior``).
        name: suffix of the metric names (``test/heldout_spearman_<name>``); empty: no suffix. Lowercase letters,
            digits and ``_``; distinct per callback.
        rows: size of the held-out subset (stratified, every class covered when ``rows`` ≥ the number of classes);
            None: the whole test split. Use the module's ``faithfulness_rows`` and ``faithfulness_seed`` to score
            faithfulness on the same rows.
        seed: seeds the subset.
        cache_dir: root folder of the cache (shared with ``PriorCacheCallback``; the keys differ).
        batch_size: texts per call of the prior.
    """

    def __init__(
        self,
        prior: AttributionPrior,
        name: str = "",
        rows: int | None = 512,
        seed: int = 0,
        cache_dir: str = "cache/priors",
        batch_size: int = 64,
    ) -> None:
        if not isinstance(prior, AttributionPrior):
            raise TypeError(f"prior must be an AttributionPrior, got {type(prior).__name__}")
        if not set(name) <= _NAME_CHARS:
            raise ValueError(f"name {name!r} may hold only lowercase letters, digits and '_'")
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be >= 1 or null, got {rows}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.prior = prior
        self.name = name
        self.rows = rows
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.last: dict[str, float | int | str | bool] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "test":
            return
        datamodule = trainer.datamodule
        splits = getattr(datamodule, "splits", None)
        if splits is None or not hasattr(datamodule, "prior_inputs"):
            raise RuntimeError("HeldOutPriorCallback needs a CapDataModule (test split in .splits, prior_inputs())")
        attach = getattr(pl_module, "attach_held_out_priors", None)
        if not callable(attach):
            raise RuntimeError(f"{type(pl_module).__name__} has no attach_held_out_priors(name, priors)")
        test = splits.test
        index = stratified_rows([e.label for e in test], self.rows, self.seed)
        texts = [test[i].text for i in index]
        labels = [test[i].label for i in index]
        n_words = [len(split_words(t)) for t in texts]
        counter = getattr(datamodule, "visible_word_counts", None)
        counts = counter(texts) if callable(counter) else n_words
        train_fingerprint = datamodule.prior_inputs()[2]
        names = list(getattr(datamodule, "label_names", []) or [])
        # label names too: they decide whether CAP's end_marker enters its key (as in PriorCacheCallback)
        self.prior.set_data_defaults(teacher_prompt=getattr(datamodule, "teacher_prompt", None), label_names=names)
        cut = [[i, c] for i, (c, n) in enumerate(zip(counts, n_words, strict=True)) if c < n]
        key = cache_key(
            self.prior.cache_key(),
            "held-out",
            train_fingerprint,
            data_fingerprint([test[i] for i in index]),
            json.dumps(names),
            str(getattr(datamodule, "setting", "")),
            json.dumps(cut),
            __version__,
        )
        path = self.cache_dir / key / MERGED
        lock = entry_lock(path.parent, "held-out prior cache entry") if trainer.is_global_zero else nullcontext()
        with lock:
            hit = False
            if trainer.is_global_zero:
                priors = load_priors(path, key, 0, n_words)
                hit = priors is not None
                if priors is None:
                    priors = self._compute(trainer, datamodule, visible_texts(texts, counts), labels, n_words)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_priors(path, priors, key, 0)
            trainer.strategy.barrier("held_out_priors_written")
            if not trainer.is_global_zero:
                priors = load_priors(path, key, 0, n_words)
                if priors is None:
                    raise RuntimeError(f"held-out priors {path} are missing or invalid on rank {trainer.global_rank}")
        attach(self.name, dict(zip(index, priors, strict=True)))
        self.last = {"cache_hit": hit, "rows": len(index), "path": str(path)}
        rank_zero_info(f"[held-out priors] {len(index)} test texts {'read' if hit else 'scored'} ({path})")

    def _compute(self, trainer, datamodule, texts, labels, n_words):
        """The prior of the held-out texts, prepared on the training split exactly as for training."""
        train_texts, train_labels, _ = datamodule.prior_inputs()
        counter = getattr(datamodule, "visible_word_counts", None)
        shown_train = visible_texts(train_texts, counter(train_texts)) if callable(counter) else train_texts
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            self.prior.prepare(
                shown_train,
                train_labels,
                datamodule.num_labels,
                trainer.strategy.root_device,
                label_names=getattr(datamodule, "label_names", None),
            )
            try:
                rows = []
                for s in range(0, len(texts), self.batch_size):
                    rows.extend(self.prior(texts[s : s + self.batch_size], labels[s : s + self.batch_size]))
            finally:
                self.prior.release()
        return pad_to_words(rows, n_words)
