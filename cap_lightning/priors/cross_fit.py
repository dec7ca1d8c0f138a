"""Cross-fitted references of the IG / LIME priors: K references, reference i fine-tuned on every fold but i, and
the routing of each text to a reference that was not trained on it (docs/cap.md §1.3, "Cross-fitted references").

A reference fine-tuned on the training split has seen every text it then scores, and may have memorised them: its
attributions on its own training texts need not be those it gives new texts. ``cross_fit_folds = K`` splits the
training texts into K folds (``folds.py``) and scores fold i with a reference that never saw it.

Design decisions:
- Each fold's reference is :func:`~cap_lightning.priors.reference.prepare_reference` on the other folds' rows (in
  split order): the same recipe as the single fine-tuned reference (model_path, epochs, lr, max_length, seed), cached
  in ``reference_cache_dir`` under a key that hashes the rows it trains on, so a rerun is a cache hit. Priors
  prepared on the same folds while another still holds them share them (the IG and LIME sources of one hybrid
  fine-tune them once); once released, the K models are freed, not kept for the rest of the run.
- A text is routed by its content: a training text (the same string as given to ``prepare``) goes to the reference
  of its fold, whatever its label or position in the batch.
- A text outside the training split (a held-out test text of ``HeldOutPriorCallback``) gets the mean of the K
  references' priors, renormalised to max 1 (``fuse_priors``, mean of max-normalised sources, as ``HybridPrior``).
  None of the K saw it, each is the same kind of model as the training priors' references (fine-tuned on (K-1)/K of
  the split), and none is picked arbitrarily; it costs no extra fine-tune (a reference on all folds would, and it
  would be a model no training prior came from), but K prior computations per such text.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cap_lightning.priors.folds import assign_folds, fold_rows

#: ``(model, texts, labels) -> one word-score tensor per text``: a prior computed on one reference
ReferenceScores = Callable[[Any, Sequence[str], Sequence[int]], list[Tensor]]


@dataclass
class CrossFitReferences:
    """The K fold references of one training split, and the fold of each of its distinct texts."""

    fold_of: dict[str, int]
    models: list[Any]
    tokenizer: Any

    def scores(self, score: ReferenceScores, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        """``score`` of every text on the reference that did not train on it (the mean of all K for a text outside
        the training split), in the order of ``texts``."""
        from cap_lightning.priors.hybrid import fuse_priors

        out: list[Tensor | None] = [None] * len(texts)
        groups: dict[int | None, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(self.fold_of.get(text), []).append(i)
        for fold, rows in groups.items():
            sub_texts, sub_labels = [texts[i] for i in rows], [labels[i] for i in rows]
            if fold is None:
                found = fuse_priors([score(model, sub_texts, sub_labels) for model in self.models], agg="mean")
            else:
                found = score(self.models[fold], sub_texts, sub_labels)
            for i, row in zip(rows, found, strict=True):
                out[i] = row
        return out  # type: ignore[return-value]


def prepare_cross_fit(
    model_path: str,
    num_labels: int,
    texts: Sequence[str],
    labels: Sequence[int],
    device: torch.device,
    folds: int,
    fine_tune_epochs: int,
    fine_tune_lr: float,
    max_length: int,
    seed: int,
    cache_dir: str | None,
) -> CrossFitReferences:
    """Split ``texts`` into ``folds`` folds (an error before any model loads when they cannot be) and fine-tune one
    reference per fold on the other folds (or load it from ``cache_dir``)."""
    from cap_lightning.priors import reference

    fold_of = assign_folds(texts, labels, folds, seed)
    plans = []
    for fold in range(folds):
        rows = fold_rows(fold_of, texts, fold)
        plans.append(([texts[i] for i in rows], [int(labels[i]) for i in rows]))
    keys = [
        reference.reference_key(model_path, num_labels, t, y, device, fine_tune_epochs, fine_tune_lr, max_length, seed)
        for t, y in plans
    ]
    shared = _LAST_CROSS_FIT[1]() if _LAST_CROSS_FIT and _LAST_CROSS_FIT[0] == keys else None
    if shared is not None:  # e.g. the IG and LIME sources of one hybrid
        return shared
    models, tokenizer = [], None
    for fold_texts, fold_labels in plans:
        model, tokenizer = reference.prepare_reference(
            model_path, num_labels, fold_texts, fold_labels, device, fine_tune_epochs, fine_tune_lr, max_length,
            seed, cache_dir,
        )  # fmt: skip
        models.append(model)
    found = CrossFitReferences(fold_of, models, tokenizer)
    _LAST_CROSS_FIT[:] = [keys, weakref.ref(found)]
    return found


#: [fold keys, weak reference to the CrossFitReferences] of the last group: priors prepared on the same folds share
#: it while one of them holds it; once all have released it, its K models are freed
_LAST_CROSS_FIT: list = []
