"""``CapModule``: fine-tune an HF sequence classifier with cross-entropy + λ · attribution alignment.

Design decisions:
- The loss is ``CE + λ·D(a_θ(x), prior)`` where ``a_θ`` is the model's own differentiable attribution (IG with
  ``create_graph``, gradient×input or Expected Gradients; ``attribution.py``) and ``D`` an alignment loss
  (``losses.py``). With ``prior_weight == 0`` the attribution is never computed, so no RNG draw or extra op
  happens and training is bit-for-bit plain fine-tuning.
- ``__init__`` validates and stores; weights load in ``configure_model`` (also called by ``load_from_checkpoint``).
  ``num_labels=None`` takes the data module's label count, which is then saved in the checkpoint.
- ``load_from_checkpoint`` reads weights only (``weights_only=True`` explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
  cannot flip it) and refuses ``weights_only=False``: a checkpoint is a user file and its pickle must not run code.
- Metrics are torchmetrics objects per stage, logged as ``stage/name`` (``val/acc``, ``test/macro_f1``).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from cap_lightning.attribution import Baseline, Gradient, Method, self_attribution
from cap_lightning.faithfulness import (
    FaithfulnessMetrics,
    classifier_embeds,
    faithfulness_step,
    rationale_scores,
    spearman_rows,
    topk_iou,
)
from cap_lightning.losses import AlignmentLoss, alignment_loss
from cap_lightning.naming import run_labels
from cap_lightning.tokens import content_mask
from lmcore.choices import check_choice
from lmcore.models import load_classifier, resolve_model_path
from lmcore.quadrature import Quadrature

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class CapModule(L.LightningModule):
    """Attribution-prior training of a small LM classifier (docs/cap.md §2).

    Args:
        model_path: short name (``minilm``), local HF folder or hub id (paper: ``roberta-base``).
        num_labels: classifier outputs; None takes the data module's label count.
        prior_weight: λ, the weight of the alignment loss; 0 reproduces plain fine-tuning exactly.
        prior_loss: alignment loss ``kl`` | ``mse`` | ``cosine`` | ``rank``.
        attribution: self-attribution ``ig`` | ``grad_x_input`` | ``expected_gradients``.
        ig_steps: interpolation steps of the differentiable IG (cost grows linearly).
        ig_baseline: IG / gradient×input baseline for content tokens: ``pad`` | ``zero`` | ``mask``.
        quadrature: IG quadrature rule ``middle`` | ``trapezoid`` | ``gausslegendre``.
        ig_chunk_size: IG steps per activation-checkpointed chunk (None: all at once). Bounds the memory of the
            double backward (MiniLM, batch 32 × 64, m = 8: 11.7 GB at None, 4.0 GB at 2) at extra compute.
        attribution_grad: how the alignment loss differentiates the attribution: ``exact`` (double backward) or
            ``finite_difference`` (same attribution value; the weight gradient by central differences of two
            first-order passes, no double backward; docs/cap.md §1.4). Applies to all three ``attribution``s.
        prior_warmup_steps: λ rises linearly from 0 to ``prior_weight`` over this many optimizer steps.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_fraction: share of training steps with linear learning-rate warm-up, then linear decay.
        faithfulness: at test time, also report ERASER comprehensiveness / sufficiency (1/5/10/20/50 % bins, AOPC)
            and their soft variants, with the model's own IG of its prediction as the rationale; and, when the
            training data carries priors, the Spearman and top-20 % IoU between the model's IG and the prior.
        faithfulness_steps: IG steps of that rationale.
        faithfulness_max_batches: test (and training, for agreement) batches scored for faithfulness; None: all.
    """

    run_labels = staticmethod(run_labels)  # the launcher names W&B runs with it (lmcore.cli)

    def __init__(
        self,
        model_path: str = "minilm",
        num_labels: int | None = None,
        prior_weight: float = 0.5,
        prior_loss: AlignmentLoss = "kl",
        attribution: Method = "ig",
        ig_steps: int = 8,
        ig_baseline: Baseline = "pad",
        quadrature: Quadrature = "middle",
        ig_chunk_size: int | None = None,
        attribution_grad: Gradient = "exact",
        prior_warmup_steps: int = 0,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.06,
        faithfulness: bool = True,
        faithfulness_steps: int = 20,
        faithfulness_max_batches: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value, alias in (
            ("prior_loss", prior_loss, AlignmentLoss),
            ("attribution", attribution, Method),
            ("attribution_grad", attribution_grad, Gradient),
            ("ig_baseline", ig_baseline, Baseline),
            ("quadrature", quadrature, Quadrature),
        ):
            check_choice(name, value, alias)  # fmt: skip
        if prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0, got {prior_weight}")
        if ig_steps < 1:
            raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
        if ig_chunk_size is not None and ig_chunk_size < 1:
            raise ValueError(f"ig_chunk_size must be >= 1 or null, got {ig_chunk_size}")
        if num_labels is not None and num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if faithfulness_steps < 1:
            raise ValueError(f"faithfulness_steps must be >= 1, got {faithfulness_steps}")
        if faithfulness_max_batches is not None and faithfulness_max_batches < 0:
            raise ValueError(f"faithfulness_max_batches must be >= 0 or null, got {faithfulness_max_batches}")
        resolve_model_path(model_path)  # a clear error for a bad path now, before any data or weights load
        self.model = None
        self.metrics = torch.nn.ModuleDict()  # stage -> MetricCollection, keyed "train_" etc. (nn.Module.train exists)
        self._baseline_token_id: int | None = None
        self.faithfulness_metrics = FaithfulnessMetrics()

    # ------------------------------------------------------------------------------------------------ set-up
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, weights_only=True,
                             **kwargs):  # fmt: skip
        """Lightning's ``load_from_checkpoint``, weights only: a pickle payload in the file is refused, never run.

        Raises:
            ValueError: ``weights_only`` is not True, or the file holds Python objects beyond weights.
        """
        import pickle

        from cap_lightning.classifier import refused

        if weights_only is not True:
            raise ValueError(
                f"CapModule.load_from_checkpoint({str(checkpoint_path)!r}, weights_only={weights_only!r}): only "
                "weights_only=True is allowed (a checkpoint's pickle could run code); drop the argument"
            )
        try:
            return super().load_from_checkpoint(
                checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict,
                weights_only=True, **kwargs,
            )  # fmt: skip
        except pickle.UnpicklingError as e:
            raise refused(checkpoint_path, e) from e

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_labels = getattr(datamodule, "num_labels", None)
        if self.hparams.num_labels is None:
            if data_labels is None:
                raise ValueError("num_labels is None and the data module does not report num_labels; set it")
            self.hparams.num_labels = data_labels
        elif data_labels is not None and data_labels != self.hparams.num_labels:
            raise ValueError(
                f"model num_labels={self.hparams.num_labels} but the data has {data_labels} labels; "
                "set model.init_args.num_labels to match (or leave it null)"
            )
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:
            token = {"pad": tokenizer.pad_token_id, "mask": tokenizer.mask_token_id, "zero": None}
            self._baseline_token_id = token[self.hparams.ig_baseline]

    def configure_model(self) -> None:
        if self.model is not None:
            return
        if self.hparams.num_labels is None:
            raise ValueError("num_labels is unknown: run through a Trainer with a CapDataModule, or set num_labels")
        self.model = load_classifier(self.hparams.model_path, self.hparams.num_labels).train()  # HF loads in eval
        if self._baseline_token_id is None and self.hparams.ig_baseline != "zero":  # e.g. after load_from_checkpoint
            from lmcore.models import load_tokenizer

            tokenizer = load_tokenizer(self.hparams.model_path)
            token = tokenizer.pad_token_id if self.hparams.ig_baseline == "pad" else tokenizer.mask_token_id
            self._baseline_token_id = token if token is not None else self.model.config.pad_token_id
        n = self.hparams.num_labels
        for stage in ("train", "val", "test"):
            self.metrics[f"{stage}_"] = MetricCollection(
                {
                    "acc": MulticlassAccuracy(num_classes=n, average="micro"),
                    "macro_f1": MulticlassF1Score(num_classes=n, average="macro"),
                },
                prefix=f"{stage}/",
            )

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.hparams.prior_weight > 0 and not getattr(datamodule, "has_priors", False):
            raise RuntimeError(
                f"prior_weight={self.hparams.prior_weight} but no priors are attached to the training data: add "
                "cap_lightning.PriorCacheCallback to trainer.callbacks, or set model.init_args.prior_weight=0"
            )

    # ---------------------------------------------------------------------------------------------- steps
    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch}).logits

    def current_prior_weight(self) -> float:
        warm = self.hparams.prior_warmup_steps
        scale = min(1.0, (self.global_step + 1) / warm) if warm > 0 else 1.0
        return self.hparams.prior_weight * scale

    def attribute(self, batch: dict[str, Tensor], create_graph: bool = True, steps: int | None = None) -> Tensor:
        """The model's own attribution of the gold logit per token (B, T), zero off content tokens.

        Computed with dropout off (eval mode; gradients still flow to the weights): every interpolation step must
        see the same function, or completeness fails and the aligned attribution is noise. Train mode is restored.
        """
        h = self.hparams
        was_training = self.model.training
        self.model.eval()
        try:
            return self._attribute(batch, create_graph, steps or h.ig_steps)
        finally:
            self.model.train(was_training)

    def _attribute(self, batch: dict[str, Tensor], create_graph: bool, steps: int) -> Tensor:
        h = self.hparams
        return self_attribution(
            self.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            batch["word_index"] >= 0,
            method=h.attribution,
            steps=steps,
            baseline=h.ig_baseline,
            baseline_token_id=self._baseline_token_id,
            quadrature=h.quadrature,
            create_graph=create_graph,
            chunk_size=h.ig_chunk_size,
            gradient=h.attribution_grad,
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        ce = F.cross_entropy(logits, batch["labels"])
        loss = ce
        weight = self.current_prior_weight()
        if weight > 0:
            mask = content_mask(batch)
            align = alignment_loss(self.hparams.prior_loss, self.attribute(batch), batch["prior"], mask)
            loss = ce + weight * align
            self.log("train/align", align, on_step=True, on_epoch=True)
            self.log("train/prior_weight", weight, on_step=True, on_epoch=False)
        self.log("train/ce", ce, on_step=True, on_epoch=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.metrics["train_"].update(logits.detach(), batch["labels"])
        self.log_dict(self.metrics["train_"], on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor]) -> Tensor:
        logits = self(batch)
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["labels"]), on_epoch=True, sync_dist=True)
        self.metrics[f"{stage}_"].update(logits, batch["labels"])
        self.log_dict(self.metrics[f"{stage}_"], on_step=False, on_epoch=True, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step("val", batch)

    def _faithful_batch(self, batch_idx: int) -> bool:
        h = self.hparams
        return h.faithfulness and (h.faithfulness_max_batches is None or batch_idx < h.faithfulness_max_batches)

    def _rationale(self, batch: dict[str, Tensor], labels: Tensor) -> Tensor:
        steps = self.hparams.faithfulness_steps
        return rationale_scores(lambda b: self.attribute(b, create_graph=False, steps=steps), batch, labels)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self._eval_step("test", batch)
        if self._faithful_batch(batch_idx):
            scores = self._rationale(batch, logits.argmax(-1))  # IG of the prediction ŷ, outside inference mode
            embeds_forward, embeds = classifier_embeds(self.model, batch)
            faithfulness_step(
                self, batch, scores, self.faithfulness_metrics, pad_token_id=self.model.config.pad_token_id or 0,
                logits=logits, embeds_forward=embeds_forward, embeds=embeds, generator=batch_idx,
            )  # fmt: skip
        return logits

    def on_test_epoch_end(self) -> None:
        if not self.hparams.faithfulness:
            return
        self._prior_agreement()
        # every rank calls compute() (it syncs the sums)
        self.log_dict({f"test/{k}": v for k, v in self.faithfulness_metrics.compute().items()})
        self.faithfulness_metrics.reset()

    def _prior_agreement(self) -> None:
        """Spearman / top-k IoU between the model's IG of the gold label and the prior, on training texts (the
        only texts with priors): did the alignment move the attributions? Skipped when no priors are attached."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not getattr(datamodule, "has_priors", False):
            return
        loader = datamodule.train_dataloader()
        for i, batch in enumerate(loader):
            if not self._faithful_batch(i):
                break
            batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            scores = self._rationale(batch, batch["labels"])
            content = content_mask(batch)
            rows = content.any(-1)
            spearman = spearman_rows(scores, batch["prior"], content)[rows]
            iou = topk_iou(scores, batch["prior"], content, self.faithfulness_metrics.topk_fraction)[rows]
            self.faithfulness_metrics.update(spearman=spearman, topk_iou=iou)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        logits = self(batch)
        return {"index": batch["index"], "pred": logits.argmax(-1), "probs": logits.softmax(-1)}

    # ------------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_fraction * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
