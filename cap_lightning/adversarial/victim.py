"""The model under attack: a ``CapModule`` checkpoint (``.ckpt``) or a saved HF classifier folder.

Design decisions:
- :func:`inspect_victim` reads only metadata (the checkpoint's hyper-parameters through a memory-mapped
  ``torch.load``, or ``config.json``), so a label-count mismatch with the data is an error before any weights load.
  An HF folder is never given a fresh head: unlike ``load_classifier`` for training, a victim must be trained.
- The victim's identity for caches is a SHA-256 of its weight files (the ``.ckpt`` file, or the folder's
  ``config.json`` + ``*.safetensors`` / ``*.bin``), streamed in 1 MiB blocks; renaming or moving a file keeps the key.
- :func:`predict` batches texts with the victim's own tokenizer and ``max_length``; it is what both the clean pass
  (which examples can be attacked) and the TextAttack wrapper call, so the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class VictimInfo:
    """What is known about a victim without loading its weights.

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


def inspect_victim(victim: str) -> VictimInfo:
    """Describe ``victim`` from metadata only.

    Raises:
        FileNotFoundError: the checkpoint or folder does not exist.
        ValueError: a folder without ``config.json`` or that is not a sequence classifier.
    """
    path = Path(victim).expanduser()
    if str(victim).endswith(".ckpt"):
        if not path.is_file():
            raise FileNotFoundError(f"victim checkpoint {victim!r} does not exist; train the baseline first")
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        hparams = ckpt.get("hyper_parameters") or {}
        if not hparams.get("num_labels") or not hparams.get("model_path"):
            raise ValueError(f"{victim}: not a CapModule checkpoint (hyper_parameters lack num_labels/model_path)")
        return VictimInfo(str(path), "ckpt", int(hparams["num_labels"]), str(hparams["model_path"]))
    if not path.is_dir():
        raise FileNotFoundError(f"victim {victim!r} is neither a .ckpt file nor an existing HF model folder")
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"victim folder {victim!r} has no config.json; expected a saved HF classifier")
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)  # fills defaults (transformers 5 omits id2label for 2 labels)
    architectures = cfg.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"victim folder {victim!r} is not a trained sequence classifier (architectures={architectures}); "
            "save one with save_pretrained after fine-tuning, or pass the CapModule .ckpt"
        )
    num_labels = cfg.num_labels
    return VictimInfo(str(path), "hf", int(num_labels), str(path))


def check_label_count(info: VictimInfo, num_labels: int, label_source: str) -> None:
    """Raise when the victim's label count differs from the data's."""
    if info.num_labels != num_labels:
        raise ValueError(
            f"victim {info.path} has {info.num_labels} labels but {label_source} has {num_labels}; "
            "attack a victim trained on this dataset"
        )


def victim_hash(info: VictimInfo) -> str:
    """SHA-256 hex digest of the victim's weight files (content only, independent of paths)."""
    path = Path(info.path)
    files = [path] if info.kind == "ckpt" else sorted(
        p for p in path.iterdir() if p.name == "config.json" or p.suffix in _WEIGHT_SUFFIXES
    )  # fmt: skip
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name if info.kind == 'hf' else 'ckpt'}\n".encode())
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def load_victim(info: VictimInfo):
    """Load ``(model, tokenizer)`` in eval mode on CPU."""
    from lmcore.models import load_tokenizer

    if info.kind == "ckpt":
        from cap_lightning.module import CapModule

        model = CapModule.load_from_checkpoint(info.path, map_location="cpu", weights_only=False).model
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(info.path)
    return model.eval(), load_tokenizer(info.tokenizer_path)


@torch.no_grad()
def predict_logits(model, tokenizer, texts: Sequence[str], max_length: int = 64, batch_size: int = 32) -> torch.Tensor:
    """Logits (N, C) of ``texts`` in batches, truncated to ``max_length`` tokens."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        out.append(model(**enc).logits.float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.num_labels)


def load_and_check_victim(info: VictimInfo, victim: str, selection, max_length: int, batch_size: int):
    """Load the victim and classify the selected clean examples; refuse a selection it gets entirely wrong (nothing to
    attack). Returns ``(model, tokenizer, predictions, correct)``."""
    model, tokenizer = load_victim(info)
    texts = [e.text for e in selection.examples]
    pred = predict_logits(model, tokenizer, texts, max_length, batch_size).argmax(-1).tolist()
    correct = [p == e.label for p, e in zip(pred, selection.examples)]
    if not any(correct):
        raise ValueError(
            f"victim {victim} classifies none of the {len(texts)} selected {selection.split} examples correctly: "
            "nothing to attack (is it trained on this dataset and label order?)"
        )
    return model, tokenizer, pred, correct
