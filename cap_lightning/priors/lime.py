"""``LIMEPrior``: word-level LIME on a reference SLM, w.r.t. the gold class (docs/cap.md §1.3, §7).

Design decisions:
- Same masks (``masks.py``), kernel and weighted-ridge solver (``ridge.py``) as CAP, so the two priors differ only
  in the black box: here the reference classifier's softmax probability of the gold class.
- The reference is loaded like ``IGPrior``'s (``reference.ReferencePrior``): a baseline ``.ckpt``, a trained HF
  folder, or a CE-only copy fine-tuned on the same split.
- All masked variants of a chunk of texts are classified in batches of ``batch_size``; deleted words are removed
  (``mask_token='delete'``) or replaced by a string such as the tokenizer's ``[MASK]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cap_lightning.classifier import predict_logits
from cap_lightning.priors.base import normalise_word_scores
from cap_lightning.priors.masks import MaskStrategy, perturb
from cap_lightning.priors.reference import ReferencePrior, check_cross_fit
from cap_lightning.priors.ridge import lime_kernel, weighted_ridge
from lmcore.choices import check_choice


class LIMEPrior(ReferencePrior):
    """LIME prior from a reference classifier.

    Args:
        model_path: the reference: a ``CapModule`` ``.ckpt``, a trained HF folder, a short name or a hub id.
        n_samples: masks per text (LIME's default is 5000; docs/cap.md canonical 500).
        mask_strategy: ``lime`` (canonical) | ``loo`` | ``loo+lime``.
        kernel_width: LIME kernel width.
        ridge_lambda: ridge penalty.
        mask_token: ``delete`` or a replacement string.
        batch_size: variants per classifier forward.
        max_length: tokens per variant.
        fine_tune_epochs: CE fine-tune of the reference on the training split first (0: use it as given).
        fine_tune_lr: learning rate of that fine-tune.
        seed: seeds the masks, the fine-tune and the cross-fitting folds.
        reference_cache_dir: folder where the fine-tuned reference is kept by its key (None: not kept), so a
            resumed or repeated extraction loads it instead of fine-tuning again.
        cross_fit_folds: None: one reference for every text. K >= 2 (needs ``fine_tune_epochs >= 1``): the training
            texts are split into K seeded, label-stratified folds and each is scored on a reference fine-tuned on
            the other folds only (K fine-tunes); other texts get the mean of the K references' priors.
    """

    runtime_args = ("batch_size", "reference_cache_dir")
    cache_name = "cap_lightning.lime_prior.LIMEPrior"

    def __init__(
        self,
        model_path: str = "minilm",
        n_samples: int = 500,
        mask_strategy: MaskStrategy = "lime",
        kernel_width: float = 25.0,
        ridge_lambda: float = 1.0,
        mask_token: str = "delete",
        batch_size: int = 256,
        max_length: int = 64,
        fine_tune_epochs: int = 0,
        fine_tune_lr: float = 5e-5,
        seed: int = 0,
        reference_cache_dir: str | None = "cache/references",
        cross_fit_folds: int | None = None,
    ) -> None:
        check_choice("mask_strategy", mask_strategy, MaskStrategy)
        if n_samples < 2 or batch_size < 1 or fine_tune_epochs < 0:
            raise ValueError(
                f"need n_samples >= 2, batch_size >= 1, fine_tune_epochs >= 0; got {n_samples}, {batch_size}, "
                f"{fine_tune_epochs}"
            )
        if kernel_width <= 0 or ridge_lambda <= 0:
            raise ValueError(f"kernel_width and ridge_lambda must be > 0, got {kernel_width}, {ridge_lambda}")
        check_cross_fit(cross_fit_folds, fine_tune_epochs)
        self.model_path, self.n_samples, self.mask_strategy = str(model_path), n_samples, mask_strategy
        self.kernel_width, self.ridge_lambda, self.mask_token = kernel_width, ridge_lambda, mask_token
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed
        self.reference_cache_dir = reference_cache_dir
        self.fine_tune_epochs, self.fine_tune_lr = fine_tune_epochs, fine_tune_lr
        self.cross_fit_folds = cross_fit_folds

    @torch.inference_mode()
    def gold_probs(self, texts: Sequence[str], labels: Sequence[int], model=None) -> Tensor:
        """The softmax probability of each gold label, float64 ``(N,)``, on ``model`` (default: the prepared
        reference)."""
        model = self.model if model is None else model
        logits = predict_logits(model, self.tokenizer, texts, self.max_length, self.batch_size)
        probs = logits.double().softmax(-1)  # (N, C)
        return probs.gather(-1, torch.tensor([int(y) for y in labels], dtype=torch.long)[:, None])[:, 0]

    def reference_scores(self, model, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        masks, variants = perturb(texts, self.mask_strategy, self.n_samples, self.seed, self.mask_token)
        gold = [int(y) for y, m in zip(labels, masks) for _ in range(len(m))]
        targets = self.gold_probs(variants, gold, model)
        out, start = [], 0
        for m in masks:
            s = targets[start : start + len(m)]
            start += len(m)
            if m.shape[1] == 0:
                out.append(torch.zeros(0))
                continue
            fit = weighted_ridge(m, s, lime_kernel(m, self.kernel_width), self.ridge_lambda)
            out.append(normalise_word_scores(fit.coef))
        return out
