"""Token heat-maps of priors next to the model's learned attributions, as HTML and a W&B table.

``AttributionTableCallback`` runs at the end of ``fit`` on the first ``num_examples`` training texts: it computes
the trained model's IG (no graph, ``steps`` steps), sums it per word, max-normalises the positive part like the
priors, and renders each text twice (prior, learned) with word backgrounds proportional to the score, beside the gold
label, the model's predicted label and its probability, and the Spearman correlation of prior and learned scores
(``–`` where it is undefined: one-word texts, constant scores). The HTML file lands in the run's own folder
(``lmcore.runs.run_dir``); with a ``WandbLogger`` the same rows are logged as a ``wandb.Table``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from cap_lightning.priors.base import normalise_word_scores
from cap_lightning.tokens import split_words, tokens_to_words
from lmcore.io import atomic_write_text
from lmcore.runs import run_dir


def heatmap_html(words: Sequence[str], scores: Tensor, rgb: tuple[int, int, int] = (220, 50, 47)) -> str:
    """Words as ``<span>``s whose background opacity is the score in [0, 1]."""
    r, g, b = rgb
    spans = [
        f'<span style="background: rgba({r},{g},{b},{float(s):.2f}); padding: 1px 2px; margin: 1px; '
        f'border-radius: 3px" title="{float(s):.3f}">{html.escape(w)}</span>'
        for w, s in zip(words, scores.tolist(), strict=True)
    ]
    return " ".join(spans)


def format_rho(rho: float) -> str:
    """``0.42``, or ``–`` when the correlation is undefined (nan)."""
    return "–" if math.isnan(rho) else f"{rho:.2f}"


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (nan when either is constant or shorter than 2; ties averaged)."""
    from cap_lightning.faithfulness import spearman_rows

    mask = torch.ones(1, a.numel(), dtype=torch.bool)
    return float(spearman_rows(a[None].float(), b[None].float(), mask, constant=float("nan"))[0])


class AttributionTableCallback(L.Callback):
    """Log prior vs learned attributions of a few training texts at the end of ``fit``.

    Args:
        num_examples: how many training texts to show.
        steps: IG steps for the learned attributions.
        filename: HTML file written in the run folder.
    """

    def __init__(self, num_examples: int = 8, steps: int = 20, filename: str = "attributions.html") -> None:
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        self.num_examples = num_examples
        self.steps = steps
        self.filename = filename

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        folder = run_dir(trainer)  # a collective (broadcast): every rank calls it
        if not trainer.is_global_zero or datamodule is None or not getattr(datamodule, "has_priors", False):
            return
        loader = datamodule.train_dataloader()
        collate = loader.collate_fn
        items = loader.dataset[: self.num_examples]
        batch = {k: v.to(pl_module.device) for k, v in collate(items).items()}
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            probs = pl_module(batch).float().softmax(-1).cpu()  # (N, C)
        with torch.enable_grad(), torch.inference_mode(False):
            learned = pl_module.attribute(batch, create_graph=False, steps=self.steps).detach().cpu()
        pl_module.train(was_training)
        n_words = [len(split_words(it["text"])) for it in items]
        learned_words = tokens_to_words(learned, batch["word_index"].cpu(), n_words)
        names = getattr(datamodule, "label_names", None)
        rows = []
        for it, lw, p in zip(items, learned_words, probs, strict=True):
            words = split_words(it["text"])
            learned_norm = normalise_word_scores(lw)
            label = names[it["label"]] if names else str(it["label"])
            pred = int(p.argmax())
            predicted = f"{names[pred] if names else pred} ({float(p[pred]):.2f})"
            rho = spearman(it["prior"], lw)
            rows.append((it["text"], label, predicted, heatmap_html(words, it["prior"]),
                         heatmap_html(words, learned_norm), rho))  # fmt: skip
        self._write_html(folder, rows)
        self._log_wandb(trainer, rows)

    def _write_html(self, folder: Path, rows: list) -> None:
        body = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(predicted)}</td><td>{prior}</td><td>{learned}</td>"
            f"<td>{format_rho(rho)}</td></tr>"
            for _, label, predicted, prior, learned, rho in rows
        )
        page = (
            "<html><body style='font-family: sans-serif'><table border=1 cellpadding=4>"
            "<tr><th>gold</th><th>predicted (p)</th><th>prior</th><th>learned (IG)</th><th>Spearman</th></tr>"
            f"{body}</table></body></html>"
        )
        atomic_write_text(folder / self.filename, page)

    def _log_wandb(self, trainer: L.Trainer, rows: list) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                table = wandb.Table(columns=["text", "gold", "predicted", "prior", "learned", "spearman"])
                for text, label, predicted, prior, learned, rho in rows:
                    table.add_data(text, label, predicted, wandb.Html(prior), wandb.Html(learned), format_rho(rho))
                logger.experiment.log({"attributions": table})
