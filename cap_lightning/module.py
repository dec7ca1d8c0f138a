"""``CapModule``: fine-tune an HF sequence classifier with cross-entropy + λ · attribution alignment.

Design decisions:
- The loss is ``CE + λ·D(a_θ(x), prior)`` where ``a_θ`` is the model's own differentiable attribution (IG with
  ``create_graph``, gradient×input or Expected Gradients; ``attribution.py``) and ``D`` an alignment loss
  (``losses.py``), at word level by default (``granularity.py``). With ``prior_weight == 0`` the attribution is
  never computed, so no RNG draw or extra op happens and training is bit-for-bit plain fine-tuning.
- ``__init__`` validates and stores; weights load in ``configure_model`` (also called by ``load_from_checkpoint``).
  ``num_labels=None`` takes the data module's label count, which is then saved in the checkpoint.
- ``load_from_checkpoint`` reads weights only (``weights_only=True`` explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
  cannot flip it) and refuses ``weights_only=False``: a checkpoint is a user file and its pickle must not run code.
- The rows that enter ``D``: rows with content, a prior that is not all zero (``losses.informative_rows``) and,
  with ``prior_mask='teacher_correct'``, a teacher that ranks the gold label first (``teacher_gating.py``). The
  shares left out are logged (``train/zero_prior_rows``, ``train/teacher_kept_rows``).
- Metrics are torchmetrics objects per stage, logged as ``stage/name`` (``val/acc``, ``test/macro_f1``).
- Faithfulness (docs/cap.md §3.4) is scored on the test rows chosen by ``faithfulness_rows`` (a seeded stratified
  subset, ``stratified.py``, matched by the batch's ``index``, so batch order does not matter), at
  ``faithfulness_level`` (word by default). Agreement with the prior (``agreement.py``) is measured on training
  texts when priors are attached to them, and on held-out test texts when ``HeldOutPriorCallback`` attached some.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from cap_lightning.agreement import AgreementMetrics, prior_agreement
from cap_lightning.attribution import Baseline, Gradient, Method, endpoint_gap, self_attribution
from cap_lightning.faithfulness import (
    FaithfulnessMetrics,
    Level,
    classifier_embeds,
    faithfulness_step,
    rationale_scores,
)
from cap_lightning.granularity import AlignmentLevel, word_level
from cap_lightning.losses import AlignmentLoss, alignment_loss, informative_rows
from cap_lightning.naming import run_labels
from cap_lightning.stratified import stratified_rows
from cap_lightning.teacher_gating import PriorMask, teacher_gate
from cap_lightning.tokens import content_mask, words_to_tokens
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
        attribution_grad: how the alignment loss differentiates the attribution: ``exact`` (double backward),
            ``finite_difference`` (same attribution value; the weight gradient by central differences of two
            first-order passes, no double backward; docs/cap.md §1.4) or ``one_sided_difference`` (one-sided
            differences: the value pass keeps the weight gradient at each point, so the backward forwards each point
            once, not twice). Applies to all three ``attribution``s.
        prior_warmup_steps: λ rises linearly from 0 to ``prior_weight`` over this many optimizer steps.
        alignment_level: ``word`` | ``subword``: compare the prior with the student's attributions summed per word
            (one value per word, as the priors are defined), or per subword (the word prior broadcast to each of
            its subwords, so a word of n subwords gets n× the target mass). The default follows docs/cap.md's
            word-level priors; the measured comparison of the two comes with the reproduction grid.
        prior_mask: ``all`` | ``teacher_correct``: use the prior on every training text, or only where the prior's
            teacher ranks the gold label first (CAP; a hybrid row is gated by its CAP teacher); the other rows are
            left out of the alignment loss (docs/cap.md §2).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_fraction: share of training steps with linear learning-rate warm-up, then linear decay.
        faithfulness: at test time, also report ERASER comprehensiveness / sufficiency (1/5/10/20/50 % bins, AOPC)
            and their soft variants, with the model's own IG of its prediction as the rationale; and, when the
            training data carries priors, the Spearman and top-20 % IoU between the model's IG and the prior.
        faithfulness_steps: IG steps of that rationale.
        faithfulness_max_batches: test (and training, for agreement) batches scored for faithfulness; None: all.
            The first test batches of a label-sorted split cover a few classes: prefer ``faithfulness_rows``.
        faithfulness_rows: score faithfulness on this many test rows, a seeded stratified subset covering every
            class (when at least as many rows as classes); None: every test row. Also bounds the training rows of the
            agreement on training texts. Exclusive with ``faithfulness_max_batches``.
        faithfulness_seed: seeds that subset (``HeldOutPriorCallback`` with the same ``rows`` and ``seed`` picks the
            same rows).
        faithfulness_level: units of the rationale and of prior agreement: ``word`` (the IG summed per word, whole
            words removed) | ``subword``. Normalised comp/suff (÷ p(ŷ|x)) and the mean p(ŷ|x) are logged beside the
            raw values.
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
        alignment_level: AlignmentLevel = "word",
        prior_mask: PriorMask = "all",
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.06,
        faithfulness: bool = True,
        faithfulness_steps: int = 20,
        faithfulness_max_batches: int | None = None,
        faithfulness_rows: int | None = None,
        faithfulness_seed: int = 0,
        faithfulness_level: Level = "word",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value, alias in (
            ("prior_loss", prior_loss, AlignmentLoss),
            ("attribution", attribution, Method),
            ("attribution_grad", attribution_grad, Gradient),
            ("ig_baseline", ig_baseline, Baseline),
            ("quadrature", quadrature, Quadrature),
            ("alignment_level", alignment_level, AlignmentLevel),
            ("prior_mask", prior_mask, PriorMask),
            ("faithfulness_level", faithfulness_level, Level),
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
        if faithfulness_rows is not None and faithfulness_rows < 1:
            raise ValueError(f"faithfulness_rows must be >= 1 or null, got {faithfulness_rows}")
        if faithfulness_rows is not None and faithfulness_max_batches is not None:
            raise ValueError(
                f"set faithfulness_rows ({faithfulness_rows}) or faithfulness_max_batches "
                f"({faithfulness_max_batches}), not both: a batch limit would drop rows of the stratified subset"
            )
        resolve_model_path(model_path)  # a clear error for a bad path now, before any data or weights load
        self.model = None
        self.metrics = torch.nn.ModuleDict()  # stage -> MetricCollection, keyed "train_" etc. (nn.Module.train exists)
        self._baseline_token_id: int | None = None
        self.faithfulness_metrics = FaithfulnessMetrics()
        self.held_out_metrics = torch.nn.ModuleDict()  # name -> AgreementMetrics, one per HeldOutPriorCallback
        self._held_out_priors: dict[str, dict[int, Tensor]] = {}
        self._faithful_rows: set[int] | None = None  # test row indices scored for faithfulness; None: all

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
        if self.hparams.prior_weight > 0 and self.hparams.prior_mask == "teacher_correct":
            if not getattr(datamodule, "has_gold_ranks", False):
                raise RuntimeError(
                    "prior_mask='teacher_correct' but the attached priors carry no teacher gold-label ranks (only "
                    "ClassAwarePrior, or a HybridPrior with one, stores them); set model.init_args.prior_mask=all"
                )

    # ---------------------------------------------------------------------------------------------- steps
    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch}).logits

    def current_prior_weight(self) -> float:
        warm = self.hparams.prior_warmup_steps
        scale = min(1.0, (self.global_step + 1) / warm) if warm > 0 else 1.0
        return self.hparams.prior_weight * scale

    def attribute(
        self,
        batch: dict[str, Tensor],
        create_graph: bool = True,
        steps: int | None = None,
        method: str | None = None,
        quadrature: Quadrature | None = None,
    ) -> Tensor:
        """The model's own attribution of the gold logit per token (B, T), zero off content tokens: with the
        training ``attribution``, ``ig_steps`` and ``quadrature`` unless ``method`` / ``steps`` / ``quadrature`` say
        otherwise.

        Computed with dropout off (eval mode; gradients still flow to the weights): every interpolation step must
        see the same function, or completeness fails and the aligned attribution is noise. Train mode is restored.
        """
        h = self.hparams
        with self._eval_mode():
            return self._attribute(
                batch, create_graph, steps or h.ig_steps, method or h.attribution, quadrature or h.quadrature
            )

    def endpoint_gap(self, batch: dict[str, Tensor]) -> Tensor:
        """F(x) − F(baseline) of the gold logit per row (B,), in eval mode: what a path attribution from the
        configured ``ig_baseline`` sums to when it is complete (``attribution.endpoint_gap``)."""
        content, baseline = batch["word_index"] >= 0, self.hparams.ig_baseline
        with self._eval_mode():
            return endpoint_gap(self.model, batch["input_ids"], batch["attention_mask"], batch["labels"], content,
                                baseline, self._baseline_token_id)  # fmt: skip

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Dropout off inside, the model's train / eval mode restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _attribute(
        self, batch: dict[str, Tensor], create_graph: bool, steps: int, method: str, quadrature: Quadrature
    ) -> Tensor:
        h = self.hparams
        return self_attribution(
            self.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            batch["word_index"] >= 0,
            method=method,
            steps=steps,
            baseline=h.ig_baseline,
            baseline_token_id=self._baseline_token_id,
            quadrature=quadrature,
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
            align = self.alignment(batch)
            loss = ce + weight * align
            self.log("train/align", align, on_step=True, on_epoch=True)
            self.log("train/prior_weight", weight, on_step=True, on_epoch=False)
        self.log("train/ce", ce, on_step=True, on_epoch=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.metrics["train_"].update(logits.detach(), batch["labels"])
        self.log_dict(self.metrics["train_"], on_step=False, on_epoch=True)
        return loss

    def alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """The alignment term ``D`` of a training batch, at ``alignment_level``, over the rows it may use (see the
        module docstring); logs the shares of rows left out."""
        h = self.hparams
        a, p, mask = self.attribute(batch), batch["prior"].to(self.device), content_mask(batch)
        if h.alignment_level == "word":
            a, p, mask = word_level(a, p, batch["word_index"], mask)
        rows = mask.any(-1)
        n_rows = max(int(rows.sum()), 1)
        informative = informative_rows(p, mask)
        self.log("train/zero_prior_rows", float((rows & ~informative).sum()) / n_rows, on_step=False, on_epoch=True)
        gate = teacher_gate(batch.get("gold_rank"), h.prior_mask, len(mask))
        if gate is not None:
            gate = gate.to(mask.device)
            kept = float((rows & informative & gate).sum()) / max(int((rows & informative).sum()), 1)
            self.log("train/teacher_kept_rows", kept, on_step=False, on_epoch=True)
            mask = mask & gate[:, None]
        return alignment_loss(h.prior_loss, a, p, mask)

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
        """The evaluation rationale: the model's IG (``faithfulness_steps``) whatever ``attribution`` it trains
        with, so every row of a comparison is measured alike (a trained MiniLM's gradient×input ranks words against
        its IG: docs/cap.md §1.4)."""
        steps = self.hparams.faithfulness_steps
        return rationale_scores(
            lambda b: self.attribute(b, create_graph=False, steps=steps, method="ig"), batch, labels
        )

    def attach_held_out_priors(self, name: str, priors: dict[int, Tensor]) -> None:
        """Word-level priors of held-out test rows, by row index (``HeldOutPriorCallback``); agreement with them is
        logged as ``test/heldout_spearman[_<name>]`` and ``test/heldout_topk_iou[_<name>]``. Attaching under a name
        again (the callback runs at every ``trainer.test``) replaces that name's priors."""
        self._held_out_priors[name] = dict(priors)
        self.held_out_metrics[name or "_"] = AgreementMetrics().to(self.device)

    def on_test_epoch_start(self) -> None:
        rows = self.hparams.faithfulness_rows
        self._faithful_rows = None
        if self.hparams.faithfulness and rows is not None:
            self._faithful_rows = set(stratified_rows(self._test_labels(), rows, self.hparams.faithfulness_seed))

    def _test_labels(self) -> list[int]:
        """Labels of the test split in row order, read from the test loader's items (``CapDataModule``'s)."""
        loader = self.trainer.test_dataloaders
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        try:
            items = sorted(loader.dataset, key=lambda it: int(it["index"]))
            return [int(it["label"]) for it in items]
        except (AttributeError, KeyError, TypeError) as e:
            raise RuntimeError(
                "faithfulness_rows needs a test dataset of items with 'index' and 'label' (CapDataModule's)"
            ) from e

    def _rows_where(self, batch: dict[str, Tensor], keep: Tensor) -> dict[str, Tensor]:
        n = keep.shape[0]
        return {k: v[keep] if isinstance(v, Tensor) and v.ndim and v.shape[0] == n else v for k, v in batch.items()}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self._eval_step("test", batch)
        if self._faithful_batch(batch_idx):
            self._faithfulness(batch, logits, batch_idx)
        if self._held_out_priors:
            self._held_out_agreement(batch)
        return logits

    def _faithfulness(self, batch: dict[str, Tensor], logits: Tensor, batch_idx: int) -> None:
        if self._faithful_rows is not None:
            index = batch["index"].tolist()
            keep = torch.tensor([i in self._faithful_rows for i in index], device=logits.device)
            if not keep.any():
                return
            batch, logits = self._rows_where(batch, keep), logits[keep]
        scores = self._rationale(batch, logits.argmax(-1))  # IG of the prediction ŷ, outside inference mode
        embeds_forward, embeds = classifier_embeds(self.model, batch)
        faithfulness_step(
            self, batch, scores, self.faithfulness_metrics, pad_token_id=self.model.config.pad_token_id or 0,
            logits=logits, embeds_forward=embeds_forward, embeds=embeds, generator=batch_idx,
            level=self.hparams.faithfulness_level,
        )  # fmt: skip

    def _held_out_agreement(self, batch: dict[str, Tensor]) -> None:
        """ρ / top-k IoU of the model's IG of the gold label vs each held-out prior, on the rows that have one."""
        index = batch["index"].tolist()
        keep = torch.tensor([any(i in p for p in self._held_out_priors.values()) for i in index])
        if not keep.any():
            return
        rows = self._rows_where(batch, keep.to(batch["index"].device))
        scores = self._rationale(rows, rows["labels"])
        content = content_mask(rows)
        kept = [i for i, k in zip(index, keep.tolist(), strict=True) if k]
        for name, priors in self._held_out_priors.items():
            have = torch.tensor([i in priors for i in kept], device=scores.device)
            if not have.any():
                continue
            words = [priors[i] for i in kept if i in priors]
            prior = words_to_tokens(words, rows["word_index"][have.to(rows["word_index"].device)].cpu())
            agreement = prior_agreement(
                scores[have], prior.to(scores.device), rows["word_index"][have], content[have],
                level=self.hparams.faithfulness_level, topk_fraction=self.faithfulness_metrics.topk_fraction,
            )  # fmt: skip
            self.held_out_metrics[name or "_"].update(agreement)

    def on_test_epoch_end(self) -> None:
        if self.hparams.faithfulness:
            self._prior_agreement()
            # every rank calls compute() (it syncs the sums)
            self.log_dict({f"test/{k}": v for k, v in self.faithfulness_metrics.compute().items()})
            self.faithfulness_metrics.reset()
        for name in self._held_out_priors:
            metrics = self.held_out_metrics[name or "_"]
            suffix = f"_{name}" if name else ""
            self.log_dict({f"test/heldout_{k}{suffix}": v for k, v in metrics.compute().items()})
            metrics.reset()

    def _prior_agreement(self) -> None:
        """Spearman / top-k IoU between the model's IG of the gold label and the prior on training texts: did the
        alignment move the attributions towards its targets? Skipped when no priors are attached. Bounded by
        ``faithfulness_max_batches`` batches or ``faithfulness_rows`` rows of the (seeded, shuffled) train loader."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not getattr(datamodule, "has_priors", False):
            return
        loader = datamodule.train_dataloader()
        left = self.hparams.faithfulness_rows
        for i, batch in enumerate(loader):
            if not self._faithful_batch(i) or left == 0:
                break
            if left is not None:
                n = batch["labels"].shape[0]
                batch = self._rows_where(batch, torch.arange(n) < left)
                left -= min(n, left)
            batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            scores = self._rationale(batch, batch["labels"])
            agreement = prior_agreement(
                scores, batch["prior"], batch["word_index"], content_mask(batch),
                level=self.hparams.faithfulness_level, topk_fraction=self.faithfulness_metrics.topk_fraction,
            )  # fmt: skip
            self.faithfulness_metrics.update(spearman=agreement.spearman, topk_iou=agreement.topk_iou)

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
