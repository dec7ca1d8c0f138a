"""A CE-only reference classifier, fine-tuned on the training split, for SLM-based priors (IG, LIME).

cap.md §1.3: the IG and LIME priors come from a reference SLM of the student's architecture, fine-tuned with
cross-entropy only on the same training split (the same few-shot subset in few-shot runs). This is the plain loop
that produces it when no checkpoint is given; it is deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def load_reference(model_path: str, num_labels: int):
    """Load a classifier from a ``CapModule`` checkpoint (``.ckpt``), an HF folder, a short name or a hub id."""
    if str(model_path).endswith(".ckpt"):
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"reference checkpoint {model_path!r} does not exist; train the baseline first")
        from cap_lightning.module import CapModule

        module = CapModule.load_from_checkpoint(model_path, map_location="cpu")
        if module.hparams.num_labels != num_labels:
            raise ValueError(f"{model_path} has {module.hparams.num_labels} labels, the data has {num_labels}")
        return module.model
    from cap_lightning.models import load_classifier

    return load_classifier(model_path, num_labels)


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
