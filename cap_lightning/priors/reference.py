"""The reference classifier of the SLM-based priors (IG, LIME), and ``ReferencePrior``, their common base.

docs/cap.md §1.3: the IG and LIME priors come from a reference SLM of the student's architecture, fine-tuned with
cross-entropy only on the same training split (the same few-shot subset in few-shot runs). ``fine_tune`` is the
plain loop that produces it when no checkpoint is given; it is deterministic for a seed. With
``cross_fit_folds = K`` a ``ReferencePrior`` fine-tunes K references instead, each on all folds of the split but one
(``cross_fit.py``, folds from ``folds.py``), so no training text is scored on a reference trained on it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from cap_lightning.classifier import inspect_classifier, load_trained_classifier, weights_sha256
from cap_lightning.priors.base import AttributionPrior
from cap_lightning.priors.cross_fit import CrossFitReferences, prepare_cross_fit
from cap_lightning.priors.folds import check_folds
from lmcore.locks import entry_lock


def load_reference(model_path: str, num_labels: int):
    """``(model, tokenizer)`` from a ``CapModule`` checkpoint (``.ckpt``, read weights-only), an HF folder, a short
    name or a hub id (a classifier head is added when the folder has none)."""
    from lmcore.models import load_classifier, load_tokenizer

    if str(model_path).endswith(".ckpt"):
        info = inspect_classifier(model_path, role="reference")
        if info.num_labels != num_labels:
            raise ValueError(f"{model_path} has {info.num_labels} labels, the data has {num_labels}")
        model, tokenizer = load_trained_classifier(info)
        return model, tokenizer
    return load_classifier(model_path, num_labels), load_tokenizer(model_path)


def reference_key(
    model_path: str,
    num_labels: int,
    texts: Sequence[str],
    labels: Sequence[int],
    device: torch.device,
    fine_tune_epochs: int,
    fine_tune_lr: float,
    max_length: int,
    seed: int,
) -> str:
    """The key of a prepared reference: its weights' digest, the rows it is fine-tuned on and the recipe."""
    from lmcore.models import resolve_model_path

    path = str(model_path)
    local = Path(resolve_model_path(path)) if not path.endswith(".ckpt") else Path(path)
    return hashlib.sha256(
        json.dumps([path, weights_sha256(local), num_labels, list(texts), [int(y) for y in labels], str(device),
                    fine_tune_epochs, fine_tune_lr, max_length, seed]).encode()
    ).hexdigest()  # fmt: skip


def prepare_reference(
    model_path: str,
    num_labels: int,
    texts: Sequence[str],
    labels: Sequence[int],
    device: torch.device,
    fine_tune_epochs: int = 0,
    fine_tune_lr: float = 5e-5,
    max_length: int = 64,
    seed: int = 0,
    cache_dir: str | Path | None = None,
):
    """Load the reference classifier and its tokenizer, fine-tuned with CE first when ``fine_tune_epochs > 0``.

    A plain pretrained encoder (no trained head) is refused when it would not be fine-tuned. The last reference is
    kept, so several priors on the same reference and split (IG and LIME in a CAP Hybrid) load and fine-tune it once.
    With ``cache_dir``, the fine-tuned weights are also saved there by the key (atomically, under a file lock), and
    a later prepare with the same key (a resumed extraction, another run) loads them instead of fine-tuning.
    """
    from lmcore.models import resolve_model_path

    path = str(model_path)
    key = reference_key(path, num_labels, texts, labels, device, fine_tune_epochs, fine_tune_lr, max_length, seed)
    if _LAST_REFERENCE and _LAST_REFERENCE[0] == key:  # e.g. the IG and LIME sources of one CAP Hybrid
        return _LAST_REFERENCE[1], _LAST_REFERENCE[2]
    if not path.endswith(".ckpt"):
        require_trained_head(resolve_model_path(path), fine_tune_epochs)
    torch.manual_seed(seed)  # the reference's fresh head (if any) and its fine-tune follow `seed`
    model, tokenizer = load_reference(path, num_labels)
    model = model.to(device).eval()
    if fine_tune_epochs > 0 and cache_dir is not None:
        saved = Path(cache_dir) / f"{key[:32]}.safetensors"
        with entry_lock(saved, "fine-tuned reference"):  # a second run waits for the first one's fine-tune
            if not load_fine_tuned(model, saved):
                fine_tune(model, tokenizer, texts, labels, fine_tune_epochs, fine_tune_lr, max_length, seed=seed)
                save_fine_tuned(model, saved)
    elif fine_tune_epochs > 0:
        fine_tune(model, tokenizer, texts, labels, fine_tune_epochs, fine_tune_lr, max_length=max_length, seed=seed)
    _LAST_REFERENCE[:] = [key, model, tokenizer]
    return model, tokenizer


_LAST_REFERENCE: list = []  # [key, model, tokenizer] of the last reference: priors with the same one share it


def save_fine_tuned(model, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (safetensors, sorted header, atomic)."""
    from lmcore.tensor_files import save_tensors

    save_tensors(path, {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()})


def load_fine_tuned(model, path: Path) -> bool:
    """Load weights saved by :func:`save_fine_tuned` into ``model``; False when there are none. A file that does not
    load is deleted with a warning naming it (the reference is then fine-tuned again)."""
    if not path.is_file():
        return False
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        model.load_state_dict(load_file(str(path), device=str(next(model.parameters()).device)))
    except (SafetensorError, OSError, RuntimeError, KeyError) as e:
        warnings.warn(f"dropping the unreadable fine-tuned reference {path} ({e}); fine-tuning again", stacklevel=2)
        path.unlink(missing_ok=True)
        return False
    model.eval()
    return True


def require_trained_head(folder: str, fine_tune_epochs: int) -> None:
    """A prior from a randomly initialised classification head is noise: refuse it unless fine-tuned first."""
    config = Path(folder) / "config.json"
    if fine_tune_epochs > 0 or not config.is_file():  # hub ids: the user's responsibility
        return
    architectures = json.loads(config.read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"reference {folder!r} is {architectures or 'a model'} without a trained classification head; "
            "set fine_tune_epochs > 0 (CE-only reference fine-tuned on the training split) or pass a trained "
            "checkpoint (.ckpt of a baseline run, or a saved *ForSequenceClassification folder)"
        )


def fine_tune(
    model,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    epochs: int,
    lr: float = 5e-5,
    batch_size: int = 16,
    max_length: int = 64,
    seed: int = 0,
) -> None:
    """Fine-tune ``model`` in place with cross-entropy (AdamW, constant lr) for ``epochs`` passes."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    y_all = torch.tensor(list(labels), dtype=torch.long)
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    with tqdm(total=steps, desc="reference fine-tune (CE)", leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(texts), generator=generator).tolist()
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                enc = tokenizer(
                    [texts[j] for j in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                ).to(device)
                loss = F.cross_entropy(model(**enc).logits, y_all[idx].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()


def check_cross_fit(cross_fit_folds: int | None, fine_tune_epochs: int) -> None:
    """``cross_fit_folds``: null, or an integer >= 2 with ``fine_tune_epochs >= 1`` (a reference that is never
    fine-tuned is the same model for every fold: there would be nothing to cross-fit)."""
    if cross_fit_folds is None:
        return
    check_folds(cross_fit_folds)
    if fine_tune_epochs < 1:
        raise ValueError(
            f"cross_fit_folds={cross_fit_folds} needs fine_tune_epochs >= 1 (each fold's reference is fine-tuned "
            f"from model_path on the other folds), got fine_tune_epochs={fine_tune_epochs}: a checkpoint used as "
            "given is one model for every fold, so nothing would be cross-fitted; set fine_tune_epochs or drop "
            "cross_fit_folds"
        )


class ReferencePrior(AttributionPrior):
    """A prior computed on a reference classifier (IG, LIME): ``prepare`` loads it once — a ``.ckpt``, a trained HF
    folder, or a CE-only copy fine-tuned on the training split (:func:`prepare_reference`) — and ``release`` frees
    it. With ``cross_fit_folds = K``, ``prepare`` fine-tunes K references instead, reference i on every fold but i
    (``cross_fit.py``), and each text is scored on one that was not trained on it. Subclasses keep ``model_path``,
    ``fine_tune_epochs``, ``fine_tune_lr``, ``max_length``, ``seed``, ``reference_cache_dir`` and
    ``cross_fit_folds`` as attributes (their init arguments), check the last with :func:`check_cross_fit`, and
    compute a prior on one given reference in :meth:`reference_scores`."""

    #: left out of ``config()`` while null, so the cache keys of configs without it stay as they were
    conditional_args = ("cross_fit_folds",)

    model_path: str
    fine_tune_epochs: int
    fine_tune_lr: float
    max_length: int
    seed: int
    reference_cache_dir: str | None = None
    cross_fit_folds: int | None = None
    model = None
    tokenizer = None
    references: CrossFitReferences | None = None

    def config(self) -> dict[str, Any]:
        config = super().config()
        if config.get("cross_fit_folds") is None:
            config.pop("cross_fit_folds", None)
        return config

    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        if self.cross_fit_folds is not None:
            if self.references is None:
                self.references = prepare_cross_fit(
                    self.model_path, num_labels, texts, labels, device, self.cross_fit_folds, self.fine_tune_epochs,
                    self.fine_tune_lr, self.max_length, self.seed, self.reference_cache_dir,
                )  # fmt: skip
                self.tokenizer = self.references.tokenizer
        elif self.model is None:
            self.model, self.tokenizer = prepare_reference(
                self.model_path, num_labels, texts, labels, device, self.fine_tune_epochs, self.fine_tune_lr,
                self.max_length, self.seed, self.reference_cache_dir,
            )  # fmt: skip

    @abstractmethod
    def reference_scores(self, model, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        """The prior of ``texts`` computed on the reference ``model`` (with ``self.tokenizer``)."""

    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.prepare(...) must run before computing priors")
        if self.references is not None:
            return self.references.scores(self.reference_scores, texts, labels)
        return self.reference_scores(self.model, texts, labels)

    def release(self) -> None:
        self.model = None
        self.tokenizer = None
        self.references = None
