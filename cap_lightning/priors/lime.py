"""``LIMEPrior``: word-level LIME on a reference SLM, w.r.t. the gold class (docs/cap.md §1.3, §7).

Design decisions:
- Same masks (``masks.py``), kernel and weighted-ridge solver (``ridge.py``) as CAP, so the two priors differ only
  in the black box: here the reference classifier's softmax probability of the gold class.
- The reference is loaded like ``IGPrior``'s (``priors.ReferencePrior``): a baseline ``.ckpt``, a trained HF
  folder, or a CE-only copy fine-tuned on the same split.
- All masked variants of a chunk of texts are classified in batches of ``batch_size``; deleted words are removed
  (``mask_token='delete'``) or replaced by a string such as the tokenizer's ``[MASK]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from cap_lightning.classifier import predict_logits
from cap_lightning.priors.base import ReferencePrior, normalise_word_scores
from cap_lightning.priors.masks import MASK_STRATEGIES, apply_mask, sample_masks
from cap_lightning.priors.ridge import lime_kernel, weighted_ridge
from cap_lightning.tokens import split_words


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
        seed: seeds the masks and the fine-tune.
    """

    def __init__(
        self,
        model_path: str = "minilm",
        n_samples: int = 500,
        mask_strategy: Literal["loo", "lime", "loo+lime"] = "lime",
        kernel_width: float = 25.0,
        ridge_lambda: float = 1.0,
        mask_token: str = "delete",
        batch_size: int = 256,
        max_length: int = 64,
        fine_tune_epochs: int = 0,
        fine_tune_lr: float = 5e-5,
        seed: int = 0,
    ) -> None:
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy {mask_strategy!r} is not one of {MASK_STRATEGIES}")
        if n_samples < 2 or batch_size < 1 or fine_tune_epochs < 0:
            raise ValueError(
                f"need n_samples >= 2, batch_size >= 1, fine_tune_epochs >= 0; got {n_samples}, {batch_size}, "
                f"{fine_tune_epochs}"
            )
        if kernel_width <= 0 or ridge_lambda <= 0:
            raise ValueError(f"kernel_width and ridge_lambda must be > 0, got {kernel_width}, {ridge_lambda}")
        self._config = {
            "model_path": str(model_path),
            "n_samples": n_samples,
            "mask_strategy": mask_strategy,
            "kernel_width": kernel_width,
            "ridge_lambda": ridge_lambda,
            "mask_token": mask_token,
            "max_length": max_length,
            "fine_tune_epochs": fine_tune_epochs,
            "fine_tune_lr": fine_tune_lr,
            "seed": seed,
        }
        self.batch_size = batch_size

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @torch.inference_mode()
    def gold_probs(self, texts: Sequence[str], labels: Sequence[int]) -> Tensor:
        """The reference's softmax probability of each gold label, float64 ``(N,)``."""
        logits = predict_logits(self.model, self.tokenizer, texts, self._config["max_length"], self.batch_size)
        probs = logits.double().softmax(-1)  # (N, C)
        return probs.gather(-1, torch.tensor([int(y) for y in labels], dtype=torch.long)[:, None])[:, 0]

    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        if self.model is None:
            raise RuntimeError("LIMEPrior.prepare(...) must run before computing priors")
        c = self._config
        masks, variants, gold = [], [], []
        for text, y in zip(texts, labels):
            words = split_words(text)
            m = sample_masks(len(words), c["mask_strategy"], c["n_samples"], c["seed"], text)
            masks.append(m)
            variants.extend(apply_mask(words, row, c["mask_token"]) for row in m)
            gold.extend([int(y)] * len(m))
        targets = self.gold_probs(variants, gold)
        out, start = [], 0
        for m in masks:
            s = targets[start : start + len(m)]
            start += len(m)
            if m.shape[1] == 0:
                out.append(torch.zeros(0))
                continue
            out.append(
                normalise_word_scores(weighted_ridge(m, s, lime_kernel(m, c["kernel_width"]), c["ridge_lambda"]).coef)
            )
        return out
