"""Attribution priors: one word-level score vector in [0, 1] per training text.

Design decisions:
- ``AttributionPrior`` is the interface every prior source implements (IG here; CAP, LIME and the hybrid plug in
  the same way). ``__call__(texts, labels)`` returns one ``(n_words,)`` tensor per text, where words are
  ``text.split()``; ``prepare`` loads (and, if asked, fine-tunes) whatever model the prior needs, once.
- ``config()`` lists everything that changes the scores; ``cache_key()`` hashes it together with the content of
  local weight files, so a retrained reference checkpoint gives a new cache entry.
- ``IGPrior`` runs captum's ``LayerIntegratedGradients`` on the word-embedding layer of a reference classifier,
  w.r.t. the gold class, with a pad (or mask) baseline at content positions; subword scores are summed per word,
  then ``relu`` and max-normalised (docs/cap.md §7).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from cap_lightning.tokens import batch_word_index, split_words, tokens_to_words


def normalise_word_scores(scores: Tensor) -> Tensor:
    """relu, then divide by the maximum: [0, 1], all zeros when no score is positive."""
    pos = scores.clamp_min(0).float()
    top = pos.max() if pos.numel() else pos.new_tensor(0.0)
    return pos / top if top > 0 else pos


def _file_digest(path: str) -> str | None:
    """Content hash of a local weight file or folder (short names resolved to their bundled folder first); None for
    hub ids (their revision is the user's to pin)."""
    from cap_lightning.classifier import weights_sha256
    from lmcore.models import BUNDLED_MODELS, resolve_model_path

    return weights_sha256(resolve_model_path(path) if path in BUNDLED_MODELS else path)


class AttributionPrior(ABC):
    """A source of word-level attribution priors in [0, 1], w.r.t. the gold label."""

    def config(self) -> dict[str, Any]:
        """Every setting that changes the scores (JSON-serialisable)."""
        return {}

    def cache_key(self) -> str:
        """Stable hash of the class, ``config()`` and the content of local weight files it reads."""
        cfg = {"class": f"{type(self).__module__}.{type(self).__qualname__}", **self.config()}
        for name in ("model_path", "teacher_path"):
            if isinstance(cfg.get(name), str):
                cfg[f"{name}_sha256"] = _file_digest(cfg[name])
        return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()

    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        """Load (and fine-tune, if configured) the models this prior needs; called once before ``__call__``.
        ``texts``/``labels`` are the whole training split; ``label_names`` the class names in index order."""
        return None

    def release(self) -> None:
        """Free the models loaded by ``prepare``."""
        return None

    def diagnostics(self, texts: Sequence[str], labels: Sequence[int]) -> dict[str, list] | None:
        """Per-example diagnostics of the last computation (e.g. teacher confidence), or None."""
        return None

    @abstractmethod
    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        """One ``(len(text.split()),)`` float tensor in [0, 1] per text."""


class ReferencePrior(AttributionPrior):
    """A prior computed on a reference classifier (IG, LIME): ``prepare`` loads it once — a ``.ckpt``, a trained HF
    folder, or a CE-only copy fine-tuned on the training split (``reference.prepare_reference``) — and ``release``
    frees it. Subclasses keep ``model_path``, ``fine_tune_epochs``, ``fine_tune_lr``, ``max_length`` and ``seed`` in
    ``self._config``."""

    _config: dict[str, Any]
    model = None
    tokenizer = None

    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        from cap_lightning.priors.reference import prepare_reference

        c = self._config
        if self.model is None:
            self.model, self.tokenizer = prepare_reference(
                c["model_path"], num_labels, texts, labels, device, c["fine_tune_epochs"], c["fine_tune_lr"],
                c["max_length"], c["seed"],
            )  # fmt: skip

    def release(self) -> None:
        self.model = None
        self.tokenizer = None


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
        seed: seeds that fine-tune.
    """

    def __init__(
        self,
        model_path: str = "minilm",
        steps: int = 50,
        internal_batch_size: int = 64,
        baseline: Literal["pad", "mask"] = "pad",
        batch_size: int = 16,
        max_length: int = 128,
        fine_tune_epochs: int = 0,
        fine_tune_lr: float = 5e-5,
        seed: int = 0,
    ) -> None:
        if baseline not in ("pad", "mask"):
            raise ValueError(f"baseline {baseline!r} is not one of ('pad', 'mask')")
        for name, value in (("steps", steps), ("internal_batch_size", internal_batch_size), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if fine_tune_epochs < 0:
            raise ValueError(f"fine_tune_epochs must be >= 0, got {fine_tune_epochs}")
        self._config = {
            "model_path": str(model_path),
            "steps": steps,
            "internal_batch_size": internal_batch_size,
            "baseline": baseline,
            "max_length": max_length,
            "fine_tune_epochs": fine_tune_epochs,
            "fine_tune_lr": fine_tune_lr,
            "seed": seed,
        }
        self.batch_size = batch_size
        self.convergence_deltas: list[float] = []

    def config(self) -> dict[str, Any]:
        cfg = dict(self._config)
        cfg.pop("internal_batch_size")  # changes memory, not scores
        return cfg

    def prepare(self, texts, labels, num_labels, device, label_names=None) -> None:
        super().prepare(texts, labels, num_labels, device, label_names)
        c, tok = self._config, self.tokenizer
        if (tok.pad_token_id if c["baseline"] == "pad" else tok.mask_token_id) is None:
            raise ValueError(
                f"IGPrior baseline {c['baseline']!r}: the tokenizer of {c['model_path']!r} has no such token"
            )

    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        if self.model is None:
            raise RuntimeError("IGPrior.prepare(...) must run before computing priors")
        out: list[Tensor] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[i : i + self.batch_size], labels[i : i + self.batch_size]))
        return out

    def _batch(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        from captum.attr import LayerIntegratedGradients

        c, model, tok = self._config, self.model, self.tokenizer
        device = next(model.parameters()).device
        enc, word_index = batch_word_index(tok, texts, c["max_length"])
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        fill = tok.pad_token_id if c["baseline"] == "pad" else tok.mask_token_id
        base_ids = torch.where(word_index.to(device) >= 0, torch.full_like(ids, fill), ids)

        def forward(input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            return model(input_ids=input_ids, attention_mask=attention_mask).logits

        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        attr, delta = lig.attribute(
            ids,
            baselines=base_ids,
            target=torch.tensor(list(labels), device=device),
            additional_forward_args=(mask,),
            n_steps=c["steps"],
            internal_batch_size=c["internal_batch_size"],
            return_convergence_delta=True,
        )
        self.convergence_deltas.extend(delta.abs().tolist())
        token_scores = attr.sum(-1).detach().cpu()  # (B, T)
        words = tokens_to_words(token_scores, word_index, [len(split_words(t)) for t in texts])
        return [normalise_word_scores(w) for w in words]
