"""``IGPrior``: Integrated Gradients of a reference classifier w.r.t. the gold class (docs/cap.md §1.3, §7).

Design decisions:
- captum's ``LayerIntegratedGradients`` on the word-embedding layer, with a pad (or mask) baseline at content
  positions (special tokens keep their embedding); subword scores are summed per word, then ``relu`` and
  max-normalised.
- The reference is loaded like ``LIMEPrior``'s (``reference.ReferencePrior``): a baseline ``.ckpt``, a trained HF
  folder, or a CE-only copy fine-tuned on the same split.
- captum's convergence deltas (completeness errors) are kept in ``convergence_deltas`` for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from cap_lightning.priors.base import normalise_word_scores
from cap_lightning.priors.reference import ReferencePrior, check_cross_fit
from cap_lightning.tokens import batch_word_index, split_words, tokens_to_words
from lmcore.choices import check_choice

IGBaseline = Literal["pad", "mask"]


class IGPrior(ReferencePrior):
    """Integrated-Gradients prior from a reference classifier (captum ``LayerIntegratedGradients``).

    Args:
        model_path: the reference: a ``CapModule`` checkpoint (``.ckpt``, e.g. a CE-only baseline run of the same
            split), an HF folder, a short name or a hub id.
        steps: IG interpolation steps.
        internal_batch_size: interpolation steps per forward (bounds memory).
        baseline: content-token baseline, ``pad`` or ``mask``.
        batch_size: texts per IG call.
        max_length: tokens per text; words past it get 0.
        fine_tune_epochs: if > 0, first fine-tune the reference with CE on the training split for this many epochs
            (the docs/cap.md reference SLM in one command; use 0 with a trained checkpoint).
        fine_tune_lr: learning rate of that fine-tune.
        seed: seeds that fine-tune (and the cross-fitting folds).
        reference_cache_dir: folder where the fine-tuned reference is kept by its key (None: not kept), so a
            resumed or repeated extraction loads it instead of fine-tuning again.
        cross_fit_folds: None: one reference for every text. K >= 2 (needs ``fine_tune_epochs >= 1``): the training
            texts are split into K seeded, label-stratified folds and each is scored on a reference fine-tuned on
            the other folds only (K fine-tunes); other texts get the mean of the K references' priors.
    """

    runtime_args = ("internal_batch_size", "batch_size", "reference_cache_dir")
    cache_name = "cap_lightning.priors.IGPrior"

    def __init__(
        self,
        model_path: str = "minilm",
        steps: int = 50,
        internal_batch_size: int = 64,
        baseline: IGBaseline = "pad",
        batch_size: int = 16,
        max_length: int = 128,
        fine_tune_epochs: int = 0,
        fine_tune_lr: float = 5e-5,
        seed: int = 0,
        reference_cache_dir: str | None = "cache/references",
        cross_fit_folds: int | None = None,
    ) -> None:
        check_choice("baseline", baseline, IGBaseline)
        for name, value in (("steps", steps), ("internal_batch_size", internal_batch_size), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if fine_tune_epochs < 0:
            raise ValueError(f"fine_tune_epochs must be >= 0, got {fine_tune_epochs}")
        check_cross_fit(cross_fit_folds, fine_tune_epochs)
        self.model_path, self.steps, self.internal_batch_size = str(model_path), steps, internal_batch_size
        self.baseline, self.batch_size, self.max_length = baseline, batch_size, max_length
        self.reference_cache_dir = reference_cache_dir
        self.fine_tune_epochs, self.fine_tune_lr, self.seed = fine_tune_epochs, fine_tune_lr, seed
        self.cross_fit_folds = cross_fit_folds
        self.convergence_deltas: list[float] = []

    def prepare(self, texts, labels, num_labels, device, label_names=None) -> None:
        super().prepare(texts, labels, num_labels, device, label_names)
        tok = self.tokenizer
        if (tok.pad_token_id if self.baseline == "pad" else tok.mask_token_id) is None:
            raise ValueError(
                f"IGPrior baseline {self.baseline!r}: the tokenizer of {self.model_path!r} has no such token"
            )

    def reference_scores(self, model, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        out: list[Tensor] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._batch(model, texts[i : i + self.batch_size], labels[i : i + self.batch_size]))
        return out

    def _batch(self, model, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        from captum.attr import LayerIntegratedGradients

        tok = self.tokenizer
        device = next(model.parameters()).device
        enc, word_index = batch_word_index(tok, texts, self.max_length)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        fill = tok.pad_token_id if self.baseline == "pad" else tok.mask_token_id
        base_ids = torch.where(word_index.to(device) >= 0, torch.full_like(ids, fill), ids)

        def forward(input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            return model(input_ids=input_ids, attention_mask=attention_mask).logits

        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        attr, delta = lig.attribute(
            ids,
            baselines=base_ids,
            target=torch.tensor(list(labels), device=device),
            additional_forward_args=(mask,),
            n_steps=self.steps,
            internal_batch_size=self.internal_batch_size,
            return_convergence_delta=True,
        )
        self.convergence_deltas.extend(delta.abs().tolist())
        token_scores = attr.sum(-1).detach().cpu()  # (B, T)
        words = tokens_to_words(token_scores, word_index, [len(split_words(t)) for t in texts])
        return [normalise_word_scores(w) for w in words]
