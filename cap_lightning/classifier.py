"""A trained text classifier from a ``CapModule`` checkpoint (``.ckpt``) or a saved HF folder: inspect it, hash it,
load it, classify texts with it. Used by the IG / LIME references and by the adversarial generators.

Design decisions:
- :func:`inspect_classifier` reads only metadata (the checkpoint's hyper-parameters through a memory-mapped,
  weights-only ``torch.load``, or ``config.json``), so a label-count mismatch is an error before any weights load.
- Checkpoints are user files: they are always read with ``weights_only=True``, so a pickle payload in a ``.ckpt``
  is refused, never executed.
- :func:`weights_sha256` identifies the weights for caches: the ``.ckpt`` file's content, or a folder's weight,
  config and tokenizer files (name + content, in name order); moving or renaming the folder keeps the key.
- :func:`predict_logits` batches texts with the classifier's own tokenizer and ``max_length``; the clean pass, the
  TextAttack wrapper, the robustness callback and the LIME prior all call it, so they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lmcore.io import files_sha256

_HASHED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class ClassifierInfo:
    """What is known about a trained classifier without loading its weights.

    Attributes:
        path: the ``.ckpt`` file or the HF folder.
        kind: ``ckpt`` or ``hf``.
        num_labels: classifier outputs.
        tokenizer_path: where the tokenizer loads from (the checkpoint's ``model_path``, or the folder).
    """

    path: str
    kind: str
    num_labels: int
    tokenizer_path: str


def read_checkpoint(path: str | Path, **kwargs):
    """``torch.load`` of a user-supplied checkpoint, weights only (tensors and plain containers; no code runs)."""
    import pickle

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
        except RuntimeError as e:
            if "mmap" not in str(e) or not kwargs.pop("mmap", False):
                raise
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)  # an old, non-zip file
    except pickle.UnpicklingError as e:
        raise refused(path, e) from e


def refused(path: str | Path, error: Exception) -> ValueError:
    """The error for a checkpoint that a weights-only load refused (it pickles code, not only weights)."""
    return ValueError(
        f"{path}: refused to load: it holds Python objects beyond weights and plain values (only weights-only "
        f"checkpoints are read, so a file from elsewhere cannot run code): {str(error).splitlines()[0]}"
    )


def inspect_classifier(path: str, role: str = "classifier") -> ClassifierInfo:
    """Describe the trained classifier at ``path`` from metadata only; ``role`` names it in errors.

    Raises:
        FileNotFoundError: the checkpoint or folder does not exist.
        ValueError: not a ``CapModule`` checkpoint, or a folder without ``config.json`` or that is not a sequence
            classifier.
    """
    p = Path(path).expanduser()
    if str(path).endswith(".ckpt"):
        if not p.is_file():
            raise FileNotFoundError(f"{role} checkpoint {path!r} does not exist; train the baseline first")
        hparams = read_checkpoint(p, mmap=True).get("hyper_parameters") or {}
        if not hparams.get("num_labels") or not hparams.get("model_path"):
            raise ValueError(f"{path}: not a CapModule checkpoint (hyper_parameters lack num_labels/model_path)")
        return ClassifierInfo(str(p), "ckpt", int(hparams["num_labels"]), str(hparams["model_path"]))
    if not p.is_dir():
        raise FileNotFoundError(f"{role} {path!r} is neither a .ckpt file nor an existing HF model folder")
    if not (p / "config.json").is_file():
        raise ValueError(f"{role} folder {path!r} has no config.json; expected a saved HF classifier")
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(p)  # fills defaults (transformers 5 omits id2label for 2 labels)
    architectures = cfg.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"{role} folder {path!r} is not a trained sequence classifier (architectures={architectures}); "
            "save one with save_pretrained after fine-tuning, or pass the CapModule .ckpt"
        )
    return ClassifierInfo(str(p), "hf", int(cfg.num_labels), str(p))


def weights_sha256(path: str | Path) -> str | None:
    """SHA-256 of a checkpoint file, or of a folder's weight, config and tokenizer files; None when there are none."""
    p = Path(path)
    if p.is_file():
        return files_sha256([p])
    if not p.is_dir():
        return None
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in _HASHED_SUFFIXES)
    return files_sha256(files, headers=[f"{f.name}\n" for f in files]) if files else None


def load_trained_classifier(info: ClassifierInfo):
    """Load ``(model, tokenizer)`` in eval mode on the CPU."""
    from lmcore.models import load_tokenizer

    if info.kind == "ckpt":
        from cap_lightning.module import CapModule

        model = CapModule.load_from_checkpoint(info.path, map_location="cpu", weights_only=True).model
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(info.path)
    return model.eval(), load_tokenizer(info.tokenizer_path)


@torch.no_grad()
def predict_logits(model, tokenizer, texts: Sequence[str], max_length: int = 64, batch_size: int = 32) -> torch.Tensor:
    """Float32 logits (N, C) of ``texts`` on the CPU, in batches, truncated to ``max_length`` tokens."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        out.append(model(**{k: enc[k] for k in _MODEL_INPUTS if k in enc}).logits.float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.num_labels)
