"""``RobustnessCallback``: at the end of ``lightning test`` on an adversarial split, log clean accuracy, accuracy
under attack and attack success rate of the model under test.

Design decisions:
- The data module's test loader yields the attacked texts only (that is what ``test/acc`` measures). The callback
  reads the split file itself (``datamodule.hparams.adversarial_file``, or its own ``adversarial_file``) and runs
  the model under test on both ``original_text`` and ``text`` of every row, so the metrics hold for any model:
  the victim the split was generated against, or another one (a transfer attack, e.g. CAP on the baseline's set).
- Metrics come from the pure :func:`~cap_lightning.adversarial.metrics.robustness_from_predictions`, logged through
  ``pl_module.log`` in ``on_test_epoch_end``, so they appear in the returned test results, the progress output and
  every attached logger (W&B offline), next to ``test/acc``. The generation-time figures against the victim (from
  the row statuses) are logged too, under ``adv/victim_*``, and the recipe(s) in the file go to the logger config.
- The result is also saved beside the tested run (``results.save_robustness``: ``<run>/robustness/<stem>.json``
  for ``--ckpt_path <run>/checkpoints/best.ckpt``), where the reproduction table picks it up.
- The whole file is evaluated, independent of ``max_eval_examples`` (it is small: a few hundred rows); every rank
  computes the same numbers, so no sync is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch

from cap_lightning.adversarial.format import read_adversarial_jsonl
from cap_lightning.adversarial.metrics import robustness_from_predictions, robustness_from_statuses
from cap_lightning.adversarial.results import run_folder, save_robustness
from cap_lightning.classifier import predict_logits
from lmcore.runs import run_dir


class RobustnessCallback(L.Callback):
    """Log robustness metrics of the tested model on an attacked split.

    Args:
        adversarial_file: the split file; default: the data module's ``adversarial_file``.
        prefix: metric name prefix.
        batch_size: texts per forward pass.
        max_length: tokens per text (default: the data module's ``max_length``, else 64).
        save: write the metrics to ``<run>/robustness/<split file stem>.json``.
    """

    def __init__(
        self,
        adversarial_file: str | None = None,
        prefix: str = "adv/",
        batch_size: int = 64,
        max_length: int | None = None,
        save: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.adversarial_file = adversarial_file
        self.prefix = prefix
        self.batch_size = batch_size
        self.max_length = max_length
        self.save = save
        self.last: dict[str, float] = {}

    def _file(self, trainer: L.Trainer) -> Path:
        path = self.adversarial_file
        if path is None:
            hparams = getattr(trainer.datamodule, "hparams", {}) or {}
            path = hparams.get("adversarial_file")
        if not path:
            raise ValueError(
                "RobustnessCallback needs an attacked split: set data.init_args.split=adversarial and "
                "data.init_args.adversarial_file, or pass adversarial_file to the callback"
            )
        return Path(path)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test":
            read_adversarial_jsonl(self._file(trainer))  # fail before testing, naming the file and line

    @torch.no_grad()
    def _predict(self, trainer: L.Trainer, pl_module: L.LightningModule, texts: list[str]) -> list[int]:
        datamodule = trainer.datamodule
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is None:
            from lmcore.models import load_tokenizer

            tokenizer = load_tokenizer(pl_module.hparams.model_path)
        max_length = self.max_length or (getattr(datamodule, "hparams", {}) or {}).get("max_length", 64)
        return predict_logits(pl_module.model, tokenizer, texts, max_length, self.batch_size).argmax(-1).tolist()

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = read_adversarial_jsonl(self._file(trainer))
        if not rows:
            raise ValueError(f"{self._file(trainer)} has no rows")
        was_training = pl_module.training
        pl_module.eval()
        try:
            clean = self._predict(trainer, pl_module, [r.original_text for r in rows])
            attacked = self._predict(trainer, pl_module, [r.text for r in rows])
        finally:
            pl_module.train(was_training)
        report = robustness_from_predictions([r.label for r in rows], clean, attacked)
        victim = robustness_from_statuses([r.status for r in rows])
        metrics = report.as_dict(self.prefix)
        metrics |= {
            f"{self.prefix}victim_attacked_acc": victim.attacked_accuracy,
            f"{self.prefix}victim_attack_success_rate": victim.attack_success_rate,
        }
        self.last = metrics
        for name, value in metrics.items():
            if not math.isnan(value):
                pl_module.log(name, value, on_epoch=True, sync_dist=False, rank_zero_only=True)
        recipes = sorted({r.recipe for r in rows})
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_hyperparams({"adversarial": {"file": str(self._file(trainer)), "recipes": recipes}})
        fallback = run_dir(trainer) if self.save else None  # a collective (broadcast): every rank calls it
        if self.save and trainer.is_global_zero:
            ckpt = trainer.ckpt_path
            save_robustness(run_folder(ckpt, fallback), self._file(trainer), recipes, metrics, ckpt)
