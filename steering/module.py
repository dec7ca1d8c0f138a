"""``SteeringModule``: GrAInS and baselines as ``lightning predict`` (extraction) then ``lightning test`` (evaluation).

Design decisions (docs/design.md §6 "predict-then-test"):
- ``predict`` extracts per-example deltas on every rank (IG needs gradients w.r.t. the inputs: the step re-enables
  grad inside ``inference_mode(False)``, so ``trainer.inference_mode`` need not be touched); the module's own
  ``SteeringVectorWriter`` (added by ``configure_callbacks``) gathers them, drops sampler duplicates by index,
  builds the vector (provenance from ``vector_provenance``) and writes vector, deltas and split record from rank 0.
- Resume: ``on_predict_start`` sets ``delta_parts`` (``steering.writer.DeltaParts``) keyed by
  ``extraction_key()`` (everything that changes the deltas). ``predict_step`` first asks it for a saved part holding
  exactly the batch's dataset indices and texts, and returns that part without running the model; the writer saves
  every computed batch as a part and removes the parts once the vector is written. A rerun after a kill therefore
  recomputes only the missing batches and gives the vector of an uninterrupted run. The module still writes no file.
- ``test`` loads that vector (``run predict first`` when it is missing) and scores every choice of every example
  for the base model and under ``steer(...)``; per-example metrics go into ``IndexedMean`` torchmetrics (synced
  across ranks, each example counted once). Side effects: KL to the base next-token distribution and perplexity on
  the prompts. The module logs the metrics; ``SteeringResultsWriter`` (also added by ``configure_callbacks``) writes
  them with the vector metadata and split record to ``<vector stem>.test.json``, with every metric's per-example
  values (``per_example``: index into the split → value, for paired tests over questions). The module writes no
  file.
- Checks before weights are loaded (``setup``): layers against the model config, the vector's hidden size / layer
  count against the model config, and the vector file's existence. ``check_compatible`` runs again on the model.
- Generation tasks (``GenExample``, MMHal-Bench) generate greedy answers base vs steered and score them with the
  judge callable named by ``judge``: judge score and hallucination rate (score < 3).
- Continuation tasks (``ContinuationExample``, sentiment) generate ``max_new_tokens`` greedy tokens base vs steered
  (``tasks.continuations``), judged by the classifier folder ``judge_model`` (checked from its ``config.json`` in
  ``__init__``, loaded at test start): p(``positive_label``), positive rate, and the continuation's NLL under the
  unsteered model (perplexity); plus the prompt side effects. Every per-example value (``test_per_example``) and
  the continuations (``test_continuations``) go into the test record, for paired statistics.
- The HF model is a plain attribute, not a registered child: there is nothing to train or checkpoint, and with
  ``device_map`` (sharding a model too big for one device) Lightning must not move it. Without ``device_map`` it is
  moved to the module's device when predict / test start. Under DDP each rank holds a replica (data parallel).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lmcore.choices import check_choice
from lmcore.cli import launch_command
from lmcore.io import json_sha256
from steering.extract import GrainsConfig
from steering.fitting import example_deltas, fit_metadata
from steering.hooks import AlphaUnit, Normalize, alpha_scales, steer
from steering.loading import DType, check_layers, check_steerable, config_shape, load_model_and_tokenizer
from steering.methods import METHODS, MethodName, get_method
from steering.metric_names import evaluation_metric_names
from steering.metrics import IndexedMean
from steering.pairs import ContrastivePair, pairs_hash, tokenizer_hash
from steering.tasks import (
    ContinuationExample,
    GenExample,
    choice_metrics,
    generate_answers,
    judge_scores,
    load_judge,
    prompt_side_effects,
    score_examples,
)
from steering.tasks.classifier_judge import ClassifierJudge, JudgeSpec, check_classifier_judge
from steering.tasks.continuations import judged_continuations
from steering.tasks.generation import HALLUCINATION_BELOW
from steering.tasks.side_effects import prompt_logprobs, side_effects
from steering.vectors import Aggregate, Mode, SteeringVector, package_version
from steering.writer import DeltaParts, SteeringResultsWriter, SteeringVectorWriter

CANONICAL_GRAINS = GrainsConfig()  # frozen: a safe shared default


def _predict_hint() -> str:
    return launch_command("predict")


class SteeringModule(L.LightningModule):
    def __init__(
        self,
        model_path: str = "smollm2-135m",
        method: MethodName = "grains",
        layers: list[int] | None = None,
        grains: GrainsConfig = CANONICAL_GRAINS,
        extra_top_k: list[int] | None = None,
        aggregate: Aggregate = "pca",
        mode: Mode = "both",
        unit_norm: bool = True,
        alpha: float = 4.0,
        steer_layers: list[int] | None = None,
        normalize: Normalize = "per_token",
        alpha_unit: AlphaUnit = "absolute",
        vector_path: str = "runs/steer/vector.safetensors",
        dtype: DType = "float32",
        device_map: str | None = None,
        score_batch_size: int = 16,
        side_effects: bool = True,
        eval_base: bool = True,
        judge: str = "steering.tasks.generation.reference_overlap_judge",
        max_new_tokens: int = 128,
        judge_model: str | None = None,
        positive_label: str = "positive",
        judge_batch_size: int = 32,
    ) -> None:
        """GrAInS extraction (``predict``) and base-vs-steered evaluation (``test``).

        Args:
            model_path: short name (``smollm2-135m``), local HF folder or hub id.
            method: ``grains`` | ``random_k`` | ``all_tokens`` (no-attribution controls) | ``caa`` | ``pca``.
            layers: decoder layers to extract (negative from the end); None = all.
            grains: extraction settings (``GrainsConfig``: ``top_k`` (the vector's k), ``top_k_image``, ``ig_steps``,
                ``internal_batch_size``, ``objective``, ``mask``, ``position``, ``seed`` of the random-k control,
                ``attribution`` (``ig`` | ``occlusion``), ``max_completeness_error`` (IG convergence gate), …);
                in YAML ``grains: {top_k: 10, ig_steps: 20}``. The token ``selection`` comes from ``method``.
            extra_top_k: further k extracted from the same IG pass and saved with the deltas (for a k sweep).
            aggregate: ``pca`` | ``pca_uncentred`` | ``mean``. mode: ``both`` (u⁺ − u⁻) | ``pos`` (u⁺).
            unit_norm: rescale each layer's vector to norm 1 (α comparable across methods and layers).
            alpha: steering strength at test time. steer_layers: subset of the vector's layers to steer (None = all).
            normalize: ``per_token`` (norm-preserving) | ``none`` | ``legacy_seq_axis``.
            alpha_unit: ``absolute`` (α · v) | ``layer_norm`` (α in units of each steered layer's median hidden-state
                norm over the steering prompts, stored with the vector at predict: docs/grains.md §6.7).
            vector_path: where ``predict`` writes and ``test`` reads the vector (safetensors).
            dtype: model dtype. device_map: e.g. ``auto`` to shard a large model over devices (single process).
            score_batch_size: scored sequences per forward at test time.
            side_effects: also compute KL to the base model and perplexity on the prompts.
            eval_base: also score the unsteered model (False when another run already reported it).
            judge: dotted path of ``judge(example, answer) -> 0…6`` for generation tasks (MMHal-Bench); the default
                is an offline token-overlap proxy, not the paper's GPT-4 judge.
            max_new_tokens: generation length for generation tasks (new tokens of each continuation).
            judge_model: HF classifier folder that judges continuation tasks (e.g. the SST-2 MiniLM exported with
                ``python -m cap_lightning.export``); required by them, checked here from its ``config.json``.
            positive_label: the judge's label counted as success (one of its ``id2label`` names).
            judge_batch_size: texts per judge forward.
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value, alias in (("aggregate", aggregate, Aggregate), ("mode", mode, Mode),
                                   ("normalize", normalize, Normalize), ("dtype", dtype, DType),
                                   ("alpha_unit", alpha_unit, AlphaUnit)):  # fmt: skip
            check_choice(name, value, alias)
        get_method(method).settings(aggregate, mode)
        if extra_top_k is not None and any(k < 1 for k in extra_top_k):
            raise ValueError(f"extra_top_k {extra_top_k} must hold ints >= 1")
        self.grains = grains
        self.top_ks = list(dict.fromkeys([grains.top_k, *(extra_top_k or [])]))  # the vector's k first
        if not math.isfinite(alpha):
            raise ValueError(f"alpha {alpha} must be finite")
        if score_batch_size < 1:
            raise ValueError(f"score_batch_size {score_batch_size} must be >= 1")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {max_new_tokens} must be >= 1")
        self.judge = load_judge(judge)
        if judge_batch_size < 1:
            raise ValueError(f"judge_batch_size {judge_batch_size} must be >= 1")
        self.judge_spec: JudgeSpec | None = None
        if judge_model is not None:
            self.judge_spec = check_classifier_judge(judge_model, positive_label)
        self.classifier_judge: ClassifierJudge | None = None  # loaded in on_test_start for continuation tasks
        self.test_continuations: dict[int, dict[str, str]] = {}
        if layers is not None and len(layers) == 0:
            raise ValueError("layers is empty; pass null for all layers or a list of indices")
        self.hf_model = None
        self.tokenizer = None
        self.vector: SteeringVector | None = None
        self.delta_parts: DeltaParts | None = None  # set in on_predict_start (resume of an interrupted predict)
        self.metrics = torch.nn.ModuleDict()

    # ---- set-up: checks before weights, then the model -------------------------------------------------------
    def setup(self, stage: str) -> None:
        hp = self.hparams
        hidden, num_layers = config_shape(hp.model_path)
        check_steerable(hp.model_path)
        check_layers(hp.layers, num_layers, hp.model_path)
        if stage == "test":
            path = Path(hp.vector_path)
            if not path.is_file():
                raise FileNotFoundError(f"steering vector {path} does not exist: run predict first: {_predict_hint()}")
            vector = SteeringVector.load(path)
            meta = vector.metadata
            for key, have in (("hidden_size", hidden), ("num_layers", num_layers)):
                if meta.get(key) is not None and int(meta[key]) != have:
                    raise ValueError(f"steering vector {path} was fit with {key} {meta[key]} ({meta.get('model_id')}),"
                                     f" but {hp.model_path!r} has {key} {have}; re-run {_predict_hint()}")  # fmt: skip
            if vector.hidden_size != hidden:  # the tensors themselves, for a file without that metadata
                raise ValueError(f"steering vector {path} has hidden size {vector.hidden_size}, but {hp.model_path!r} "
                                 f"has hidden_size {hidden}; re-run {_predict_hint()}")  # fmt: skip
            bad = [layer for layer in vector.layers if not 0 <= layer < num_layers]
            if bad:
                raise ValueError(f"steering vector {path}: layers {bad} are out of range for {hp.model_path!r}, which "
                                 f"has {num_layers} decoder layers; re-run {_predict_hint()}")  # fmt: skip
            check_layers(hp.steer_layers, num_layers, hp.model_path)
            steered = vector.layers if hp.steer_layers is None else [x % num_layers for x in hp.steer_layers]
            alpha_scales(vector, steered, hp.alpha_unit)  # a layer_norm unit needs the vector's stored norms
            if self.judge_spec is None and self._evaluates_continuations():
                raise ValueError("the evaluation split holds continuation examples (task 'sentiment'), which need a "
                                 "judge classifier: set model.init_args.judge_model to an HF classifier folder "
                                 "(python -m cap_lightning.export writes one from a CapModule checkpoint)")  # fmt: skip

    def _evaluates_continuations(self) -> bool:
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        split = getattr(getattr(dm, "hparams", None), "eval_split", None)
        examples = (getattr(dm, "splits", None) or {}).get(split) or []
        return any(isinstance(ex, ContinuationExample) for ex in examples)

    def configure_model(self) -> None:
        if self.hf_model is not None:
            return
        hp = self.hparams
        model, self.tokenizer = load_model_and_tokenizer(hp.model_path, hp.dtype, hp.device_map)
        object.__setattr__(self, "hf_model", model)  # not a registered child (see module docstring)

    def configure_callbacks(self) -> list[L.Callback]:
        return [SteeringVectorWriter(), SteeringResultsWriter()]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # examples hold strings and CPU images; the scoring functions move what they need

    def configure_optimizers(self):
        return None

    # ---- predict: per-example deltas --------------------------------------------------------------------------
    def extraction_key(self) -> dict[str, Any]:
        """Everything that changes the deltas (the key of the resume parts): model, tokenizer, method, settings."""
        hp, model = self.hparams, self.hf_model
        config = getattr(model, "config", None)
        params = [p for p in model.parameters() if p.device.type != "meta"]
        fingerprint = [
            json_sha256(p.detach().flatten()[:4096].double().cpu().tolist()) for p in params[:1] + params[-1:]
        ]
        return {
            "format": 1, "model_path": str(hp.model_path), "model_class": type(model).__name__,
            "revision": getattr(config, "_commit_hash", None),
            "config_hash": json_sha256(config.to_dict()) if hasattr(config, "to_dict") else None,
            "weights_fingerprint": fingerprint, "n_parameters": sum(p.numel() for p in model.parameters()),
            "tokenizer_hash": tokenizer_hash(self.tokenizer), "method": hp.method, "grains": asdict(self.grains),
            "layers": hp.layers, "top_ks": self.top_ks, "dtype": hp.dtype,
            "param_dtype": str(next(model.parameters()).dtype), "package_version": package_version(),
            "torch_version": torch.__version__,
        }  # fmt: skip

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        pairs = [ex.to_pair() for ex in batch["examples"]]
        indices, batch_hash = batch["index"].tolist(), pairs_hash(pairs)
        if self.delta_parts is not None:
            saved = self.delta_parts.load(indices, batch_hash)
            if saved is not None:  # resumed: the model does not run for this batch
                rank_zero_info(f"[steering] batch {batch_idx}: deltas of examples {indices[0]}..{indices[-1]} read "
                               f"from {self.delta_parts.path(indices)} (resumed)")  # fmt: skip
                return saved
        with torch.inference_mode(False), torch.enable_grad():
            result = example_deltas(
                self.hf_model, self.tokenizer, pairs, self.hparams.method, self.hparams.layers, self.grains,
                self.top_ks, batch_size=len(pairs), indices=indices,
            )  # fmt: skip
        prediction = {
            "index": batch["index"].cpu(),
            "layers": result.layers,
            "batch_hash": batch_hash,
            "deltas": {k: (p.cpu(), None if n is None else n.cpu()) for k, (p, n) in result.deltas.items()},
        }
        if result.k_used is not None:
            prediction["k_used"] = result.k_used  # merged by the writer into the vector's effective_top_k
        if result.errors is not None:
            prediction["completeness_error"] = result.errors  # (B,): the writer's completeness gate and record
        return prediction

    def vector_provenance(self, pairs: list[ContrastivePair], splits: dict[str, Any] | None) -> dict[str, Any]:
        """Metadata of the vector this module fits from ``pairs`` (the steering split): model, data and settings."""
        hp = self.hparams
        return fit_metadata(self.hf_model, self.tokenizer, pairs, hp.method, self.grains, top_ks=self.top_ks,
                            unit_norm=hp.unit_norm, splits=splits)  # fmt: skip

    def _log_vector_metadata(self) -> None:
        """Vector provenance (without the split row ids) into the logger's config, e.g. the W&B run."""
        if self.logger is not None and self.vector is not None:
            self.logger.log_hyperparams({"steering_vector": self.vector.summary_metadata()})

    # ---- test: base vs steered ----------------------------------------------------------------------------------
    def _place(self) -> None:
        if self.hparams.device_map is None:  # Lightning moved the module (not the plain attribute) to its device
            self.hf_model.to(self.device)

    def on_predict_start(self) -> None:
        self._place()
        self.delta_parts = DeltaParts(self.hparams.vector_path, self.extraction_key())

    def on_test_start(self) -> None:
        from steering.layers import resolve_layers

        self._place()
        self.vector = SteeringVector.load(self.hparams.vector_path, model=self.hf_model, tokenizer=self.tokenizer)
        self._log_vector_metadata()
        if self.hparams.steer_layers is not None:
            missing = [
                x for x in resolve_layers(self.hf_model, self.hparams.steer_layers) if x not in self.vector.vectors
            ]
            if missing:
                raise ValueError(f"steer_layers {missing} have no vector; {self.hparams.vector_path} covers "
                                 f"{self.vector.layers}")  # fmt: skip
        dataset = self.trainer.test_dataloaders.dataset  # the whole split on every rank (see steering.metric_names)
        examples = [dataset[i]["example"] for i in range(len(dataset))]
        names = evaluation_metric_names(examples, self.hparams.eval_base, self.hparams.side_effects)
        self.test_continuations = {}
        if any(isinstance(ex, ContinuationExample) for ex in examples):
            if self.judge_spec is None:
                raise ValueError("continuation examples need model.init_args.judge_model (an HF classifier folder)")
            if self.classifier_judge is None:
                self.classifier_judge = ClassifierJudge(self.judge_spec, self.device, self.hparams.judge_batch_size)
        self.metrics = torch.nn.ModuleDict(
            {name: IndexedMean("count" if name == "n_examples" else "mean") for name in names}
        ).to(self.device)

    def _update(self, name: str, index: torch.Tensor, values: list[float] | torch.Tensor) -> None:
        self.metrics[name].update(index, torch.as_tensor(values, dtype=torch.float64))

    def _generation_step(self, examples: list[GenExample], index: torch.Tensor) -> None:
        hp = self.hparams
        with steer(self.hf_model, self.vector, hp.alpha, layers=hp.steer_layers, normalize=hp.normalize,
                   alpha_unit=hp.alpha_unit):  # fmt: skip
            conditions = [("steered", generate_answers(self.hf_model, self.tokenizer, examples, hp.max_new_tokens))]
        if hp.eval_base:
            conditions.insert(0, ("base", generate_answers(self.hf_model, self.tokenizer, examples, hp.max_new_tokens)))
        for cond, answers in conditions:
            scores = judge_scores(self.judge, examples, answers)
            self._update(f"{cond}/judge_score", index, scores)
            self._update(f"{cond}/hallucination_rate", index, (scores < HALLUCINATION_BELOW).double())
        self._update("n_examples", index, torch.ones(len(index)))

    def _continuation_step(self, examples: list[ContinuationExample], index: torch.Tensor) -> None:
        hp, model, tok = self.hparams, self.hf_model, self.tokenizer
        prompts = [ex.prompt for ex in examples]

        def steering():
            return steer(model, self.vector, hp.alpha, layers=hp.steer_layers, normalize=hp.normalize,
                         alpha_unit=hp.alpha_unit)  # fmt: skip

        conditions = [("base", None)] if hp.eval_base else []
        texts: dict[str, list[str]] = {}
        for cond, context in [*conditions, ("steered", steering)]:
            judged = judged_continuations(model, tok, prompts, self.classifier_judge, self.judge_spec.target,
                                          hp.max_new_tokens, hp.score_batch_size, context)  # fmt: skip
            for name, values in judged.metrics().items():
                self._update(f"{cond}/{name}", index, values)
            texts[cond] = judged.texts
        for row, (i, prompt) in enumerate(zip(index.tolist(), prompts)):
            self.test_continuations[i] = {"prompt": prompt, **{cond: t[row] for cond, t in texts.items()}}
        if hp.side_effects:
            kl, nll_b, nll_s = prompt_side_effects(model, tok, prompts, self.vector, hp.alpha, hp.steer_layers,
                                                   hp.normalize, hp.score_batch_size, hp.alpha_unit)  # fmt: skip
            self._update("steered/kl", index, kl)
            self._update("base/nll", index, nll_b)
            self._update("steered/nll", index, nll_s)
        self._update("n_examples", index, torch.ones(len(index)))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hp, examples, index = self.hparams, batch["examples"], batch["index"]
        if isinstance(examples[0], GenExample):
            return self._generation_step(examples, index)
        if isinstance(examples[0], ContinuationExample):
            return self._continuation_step(examples, index)
        model, tok, bs = self.hf_model, self.tokenizer, hp.score_batch_size
        # the side effects read the prompt positions of the scorer's own rows: no extra steered (or base) forward
        fused = hp.side_effects and all(ex.pixel_values is None for ex in examples)
        prompt_lps: dict[str, list[torch.Tensor]] = {}
        conditions = []
        for cond in ("base", "steered") if hp.eval_base else ("steered",):
            context = steer(model, self.vector, hp.alpha, layers=hp.steer_layers, normalize=hp.normalize,
                            alpha_unit=hp.alpha_unit) if cond == "steered" else nullcontext()  # fmt: skip
            with context:
                scores = score_examples(model, tok, examples, bs, prompt_logprobs=fused)
            if fused:
                scores, prompt_lps[cond] = scores
            conditions.append((cond, scores))
        for cond, scores in conditions:
            per = [choice_metrics(ex, s) for ex, s in zip(examples, scores)]
            for name in dict.fromkeys(name for p in per for name in p):  # each over the examples that have it
                rows = [i for i, p in enumerate(per) if name in p]
                self._update(f"{cond}/{name}", index[rows], [per[i][name] for i in rows])
        if fused:
            prompts = [ex.prompt for ex in examples]
            base = prompt_lps.get("base") or prompt_logprobs(model, tok, prompts, bs)
            kl, nll_b, nll_s = side_effects(tok, prompts, base, prompt_lps["steered"])
            self._update("steered/kl", index, kl)
            self._update("base/nll", index, nll_b)
            self._update("steered/nll", index, nll_s)
        self._update("n_examples", index, torch.ones(len(index)))

    @staticmethod
    def run_labels(config: dict[str, Any]) -> dict[str, Any]:
        """W&B run name, group and tags from the full resolved config (``<task>-<method>-k<k>-a<alpha>-s<seed>``)."""
        data = (config.get("data") or {}).get("init_args") or {}
        model = (config.get("model") or {}).get("init_args") or {}
        grains = model.get("grains") or {}
        task, method = data.get("task", "task"), model.get("method", "grains")
        k = grains.get("top_k", GrainsConfig.top_k) if isinstance(grains, dict) else grains.top_k
        seed = data.get("seed", config.get("seed_everything"))
        name = f"{task}-{method}-k{k}-a{model.get('alpha', 4.0):g}-s{seed}"
        return {"name": name, "group": f"steer/{task}", "tags": ["steering", str(task), str(method)]}

    def on_test_epoch_end(self) -> None:
        results: dict[str, float] = {}
        per_example: dict[str, dict[str, list]] = {}
        for name, metric in self.metrics.items():
            value = float(metric.compute())
            results[f"test/{name}"] = value
            if name.endswith("nll"):  # base/nll -> base/ppl, steered/continuation_nll -> steered/continuation_ppl
                results[f"test/{name.removesuffix('nll')}ppl"] = math.exp(value)
            if name != "n_examples":
                index, values = metric.per_example()  # a collective: every rank calls it
                per_example[name] = {"index": index, "value": values}
        for name, value in results.items():
            self.log(name, value, sync_dist=False, rank_zero_only=False)
        self.test_results = results  # SteeringResultsWriter writes them with the run record at on_test_end
        self.test_per_example = per_example  # per dataset index, for paired statistics (lmcore.statistics)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, self.test_continuations)
            self.test_continuations = {i: c for part in gathered for i, c in sorted(part.items())}
        for metric in self.metrics.values():
            metric.reset()


__all__ = ["METHODS", "SteeringModule"]
