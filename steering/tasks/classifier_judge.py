"""A text classifier as the judge of generated text: p(label | text) from a Hugging Face classifier folder.

Design decisions:
- The judge is any saved ``*ForSequenceClassification`` folder, e.g. the SST-2 MiniLM this project trains with
  ``cap_lightning`` and exports (``python -m cap_lightning.export``). It is loaded through ``lmcore.models``, never
  by importing ``cap_lightning`` (docs/architecture.md, the import rule).
- ``check_classifier_judge`` reads ``config.json`` only: a missing folder, a folder that is not a sequence
  classifier, or a label name not in its ``id2label`` is an error naming the folder and its labels, raised before
  any weights (judge or LM) load.
- A judge is a callable ``texts -> (N, C)`` probabilities plus the index of the label counted as a success; the
  metrics (``label_scores``) take any such callable, so tests use a deterministic toy judge.
- Texts are batched with the judge's own tokenizer, truncated to ``max_length`` tokens; probabilities are softmax
  in float64 on the CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

Judge = Callable[[Sequence[str]], torch.Tensor]  # texts -> (N, C) probabilities


@dataclass(frozen=True)
class JudgeSpec:
    """A checked judge folder: its label names in id order and the id of the target label."""

    path: str
    labels: tuple[str, ...]
    target: int


def check_classifier_judge(path: str, target_label: str) -> JudgeSpec:
    """Check the classifier folder ``path`` and find ``target_label`` among its labels, from ``config.json`` only.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or has no ``config.json``.
        ValueError: not a sequence classifier, or ``target_label`` is not among its label names.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"judge folder {str(path)!r} does not exist; export one with "
            "python -m cap_lightning.export --ckpt <run>/checkpoints/best.ckpt --out <folder>"
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"judge folder {str(path)!r} has no config.json; expected a saved HF classifier")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(f"judge folder {str(path)!r} is not a sequence classifier (architectures={architectures})")
    id2label = config.get("id2label") or {}
    n = len(id2label) or int(config.get("num_labels", 2))
    labels = tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n))
    if target_label not in labels:
        raise ValueError(f"label {target_label!r} is not among the judge's labels {list(labels)} ({config_file}); "
                         "set positive_label to one of them")  # fmt: skip
    return JudgeSpec(str(folder), labels, labels.index(target_label))


class ClassifierJudge:
    """Probabilities of a saved HF classifier over texts (callable ``texts -> (N, C)`` float64 on the CPU)."""

    def __init__(self, spec: JudgeSpec, device: torch.device | str = "cpu", batch_size: int = 32,
                 max_length: int = 128) -> None:  # fmt: skip
        from lmcore.models import load_classifier, load_tokenizer

        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size {batch_size} and max_length {max_length} must be >= 1")
        self.spec, self.batch_size, self.max_length = spec, batch_size, max_length
        self.model = load_classifier(spec.path, len(spec.labels)).eval().to(device)
        self.tokenizer = load_tokenizer(spec.path)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)  # fmt: skip
            out.append(self.model(**enc).logits.double().softmax(-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.spec.labels), dtype=torch.float64)


def label_scores(judge: Judge, texts: Sequence[str], target: int) -> dict[str, torch.Tensor]:
    """Per text: ``p_positive`` = p(target label) and ``positive_rate`` = 1.0 when the target is the judge's top
    label (0.0 otherwise); each (N,) float64."""
    probs = torch.as_tensor(judge(texts), dtype=torch.float64)
    if probs.dim() != 2 or probs.shape[0] != len(texts) or not 0 <= target < probs.shape[1]:
        raise ValueError(f"the judge returned shape {tuple(probs.shape)} for {len(texts)} texts (target {target})")
    return {"p_positive": probs[:, target], "positive_rate": (probs.argmax(-1) == target).double()}
