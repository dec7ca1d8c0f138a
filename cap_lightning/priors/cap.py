"""``ClassAwarePrior``: the paper's CAP — a frozen LLM teacher that sees the whole label space scores masked
variants of each text; a LIME-kernel weighted ridge over the masks gives per-word importances (docs/cap.md §1.2, §7).

Design decisions:
- Prompt: instruction + enumerated label names (``_`` → space) + the (masked) text + answer marker; the target is
  the teacher's confidence in the gold label name (``target``: ``gold_prob`` (canonical), ``gold_logprob``,
  ``label_softmax`` over all labels, or ``contrastive_k``: gold log-prob minus the logsumexp of the K labels the
  teacher ranks highest on the unmasked text).
- Masks: ``masks.sample_masks`` (``loo+lime`` by default, M = min(n_samples, 2ⁿ), deterministic per (seed, text)).
  Surrogate: ``ridge.weighted_ridge`` on the LIME kernel, fp64 Cholesky with fallbacks. Prior = relu(φ) / max.
- Speed: all masked variants of a chunk of texts go through one ``TeacherScorer.score`` call (shared prefix
  KV-cached, variants packed); nothing is generated.
- Every result is also stored per example (``example_cache.py``), keyed by the teacher weights, every setting
  and the label names, so few-shot seeds that share texts share their CAP scores.
- Diagnostics per example, stored with the scores: the teacher's unmasked gold confidence, its gold-label rank
  (0 = the teacher would pick the gold label), the surrogate's weighted R² and the solver used.
- Bad input, before the teacher runs: label names the teacher tokenizer cannot encode, gold labels outside the
  label names, a label list of the wrong length. Texts with no words get an empty prior; a one-word text is
  scored on its two masks. Non-finite teacher targets raise (``nonfinite='raise'``) or give that example an
  all-zero prior, counted in the diagnostics (``'zero'``); a NaN prior is never produced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cap_lightning.priors.base import AttributionPrior, normalise_word_scores
from cap_lightning.priors.masks import MASK_STRATEGIES, apply_mask, sample_masks
from cap_lightning.priors.ridge import lime_kernel, weighted_ridge
from cap_lightning.priors.store import ExampleStore, example_key
from cap_lightning.tokens import split_words

TARGETS = ("gold_prob", "gold_logprob", "label_softmax", "contrastive_k")


class ClassAwarePrior(AttributionPrior):
    """Class-Aware Attribution Prior from a frozen causal-LM teacher.

    Args:
        teacher_path: the teacher: short name (``smollm2-135m``), HF folder or hub id (paper: a LLaMA instruct model).
        instruction: first line of the prompt, before the label list.
        text_prefix: marker before the text (``Utterance:``).
        answer_prefix: marker after the text, followed by the label name (``Intent:``).
        chat_template: render the prompt with the teacher tokenizer's chat template.
        label_names: class names in index order; None takes the data module's.
        mask_strategy: ``loo`` | ``lime`` | ``loo+lime``.
        n_samples: masks per text (more when LOO rows alone exceed it; all 2ⁿ subsets when 2ⁿ ≤ n_samples).
        kernel_width: LIME kernel width σ.
        ridge_lambda: ridge penalty λ.
        target: teacher confidence regressed on the masks (see the module docstring).
        contrastive_k: K of ``target='contrastive_k'``.
        mask_token: ``delete`` removes masked words; any other string replaces them (e.g. ``_``).
        seed: mask sampling seed.
        batch_size: masked variants per teacher forward.
        max_tokens: packed tokens per teacher forward.
        teacher_dtype: ``float32`` | ``bfloat16`` | ``float16``.
        nonfinite: ``raise`` | ``zero`` for an example whose teacher targets are NaN/inf.
        example_cache_dir: folder of the per-example store shared across splits and seeds (None: off).
    """

    caches_examples = True

    def __init__(
        self,
        teacher_path: str = "smollm2-135m",
        instruction: str = "Classify the user utterance into exactly one of the following intents.",
        text_prefix: str = "Utterance:",
        answer_prefix: str = "Intent:",
        chat_template: bool = False,
        label_names: list[str] | None = None,
        mask_strategy: Literal["loo", "lime", "loo+lime"] = "loo+lime",
        n_samples: int = 64,
        kernel_width: float = 25.0,
        ridge_lambda: float = 1.0,
        target: Literal["gold_prob", "gold_logprob", "label_softmax", "contrastive_k"] = "gold_prob",
        contrastive_k: int = 3,
        mask_token: str = "delete",
        seed: int = 0,
        batch_size: int = 64,
        max_tokens: int = 2048,
        teacher_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        nonfinite: Literal["raise", "zero"] = "raise",
        example_cache_dir: str | None = "cache/cap_examples",
    ) -> None:
        choices = {"mask_strategy": (mask_strategy, MASK_STRATEGIES), "target": (target, TARGETS)}
        choices |= {"nonfinite": (nonfinite, ("raise", "zero"))}
        choices |= {"teacher_dtype": (teacher_dtype, ("float32", "bfloat16", "float16"))}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {allowed}")
        for name, value in (("n_samples", n_samples - 1), ("contrastive_k", contrastive_k), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} is too small: got {value + (name == 'n_samples')}")
        if kernel_width <= 0 or ridge_lambda <= 0:
            raise ValueError(f"kernel_width and ridge_lambda must be > 0, got {kernel_width}, {ridge_lambda}")
        if not mask_token.strip():
            raise ValueError("mask_token must be 'delete' or a non-blank replacement string")
        from lmcore.models import resolve_model_path

        resolve_model_path(teacher_path)  # a clear error for a bad path now
        self._config = {
            "teacher_path": str(teacher_path),
            "instruction": instruction,
            "text_prefix": text_prefix,
            "answer_prefix": answer_prefix,
            "chat_template": chat_template,
            "label_names": list(label_names) if label_names is not None else None,
            "mask_strategy": mask_strategy,
            "n_samples": n_samples,
            "kernel_width": kernel_width,
            "ridge_lambda": ridge_lambda,
            "target": target,
            "contrastive_k": contrastive_k,
            "mask_token": mask_token,
            "seed": seed,
            "teacher_dtype": teacher_dtype,
            "nonfinite": nonfinite,
        }
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.store = ExampleStore(example_cache_dir) if example_cache_dir else None
        self.scorer = None
        self.label_names: list[str] | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self._namespace: str | None = None

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    # ------------------------------------------------------------------------------------------- set-up
    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        names = self._config["label_names"] or (list(label_names) if label_names is not None else None)
        if names is None:
            raise ValueError("ClassAwarePrior needs label names: set label_names, or use a data module that has them")
        if len(names) != num_labels:
            raise ValueError(f"{len(names)} label names for {num_labels} labels: {names}")
        bad = sorted({int(y) for y in labels if not 0 <= int(y) < len(names)})
        if bad:
            raise ValueError(
                f"gold labels {bad} are missing from the {len(names)} label names (valid: 0..{len(names) - 1})"
            )
        self.label_names = list(names)
        self._namespace = hashlib.sha256(json.dumps([self.cache_key(), self.label_names]).encode()).hexdigest()
        if self.scorer is None:
            self.scorer = self.build_scorer(device)

    def build_scorer(self, device: torch.device, use_prefix_cache: bool = True):
        """Load the teacher and validate the label names against its tokenizer."""
        from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts
        from lmcore.models import load_causal_lm, load_tokenizer

        c = self._config
        tokenizer = load_tokenizer(c["teacher_path"])
        parts = build_prompt_parts(
            self.label_names, c["instruction"], c["text_prefix"], c["answer_prefix"], tokenizer, c["chat_template"]
        )
        TeacherScorer(None, tokenizer, parts, self.label_names)  # label names are checked before the weights load
        model = load_causal_lm(c["teacher_path"], dtype=c["teacher_dtype"]).to(device)
        return TeacherScorer(
            model, tokenizer, parts, self.label_names, self.batch_size, self.max_tokens, use_prefix_cache
        )

    def release(self) -> None:
        self.scorer = None

    # ------------------------------------------------------------------------------------------- compute
    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        if self.scorer is None or self._namespace is None:
            raise RuntimeError("ClassAwarePrior.prepare(...) must run before computing priors")
        keys = [example_key(self._namespace, t, int(y)) for t, y in zip(texts, labels)]
        stored = self.store.load() if self.store is not None else {}
        for i, k in enumerate(keys):
            if k not in self.records and self._valid(stored.get(k), texts[i]):
                self.records[k] = stored[k]
        todo = [i for i, k in enumerate(keys) if k not in self.records]
        if todo:
            fresh = self.compute([texts[i] for i in todo], [int(labels[i]) for i in todo])
            new = {keys[i]: rec for i, rec in zip(todo, fresh)}
            self.records.update(new)
            if self.store is not None:
                self.store.save(new)
        return [torch.tensor(self.records[k]["prior"], dtype=torch.float32) for k in keys]

    @staticmethod
    def _valid(record: dict | None, text: str) -> bool:
        if not record or not isinstance(record.get("prior"), list) or len(record["prior"]) != len(split_words(text)):
            return False
        return all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in record["prior"])

    def targets(self, texts: Sequence[str], labels: Sequence[int], unmasked: Sequence[Tensor]) -> Tensor:
        """Teacher confidence in each text's gold label, float64 ``(N,)`` (``unmasked``: the all-label
        log-probabilities of each text's original, used by ``contrastive_k``)."""
        c, scorer = self._config, self.scorer
        if c["target"] in ("gold_prob", "gold_logprob"):
            logp = scorer.score(texts, labels)
            return logp.exp() if c["target"] == "gold_prob" else logp
        if c["target"] == "label_softmax":
            return torch.stack([scorer.label_logprobs(t).softmax(-1)[y] for t, y in zip(texts, labels)])
        rows, foils = [], []
        for t, y, full in zip(texts, labels, unmasked):
            ranked = [int(i) for i in full.argsort(descending=True) if int(i) != y][: c["contrastive_k"]]
            foils.append(ranked)
            rows.extend([(t, y)] + [(t, f) for f in ranked])
        logp = scorer.score([r[0] for r in rows], [r[1] for r in rows])
        out, start = [], 0
        for ranked in foils:
            block = logp[start : start + 1 + len(ranked)]
            out.append(block[0] - torch.logsumexp(block[1:], 0))
            start += 1 + len(ranked)
        return torch.stack(out)

    def compute(self, texts: Sequence[str], labels: Sequence[int]) -> list[dict[str, Any]]:
        """CAP scores and diagnostics for each (text, gold label), without the example store."""
        c = self._config
        unmasked = [self.scorer.label_logprobs(t) for t in tqdm(texts, desc="teacher: label ranks", leave=False)]
        masks, variants, owners = [], [], []
        for i, text in enumerate(texts):
            words = split_words(text)
            m = sample_masks(len(words), c["mask_strategy"], c["n_samples"], c["seed"], text)
            masks.append(m)
            variants.extend(apply_mask(words, row, c["mask_token"]) for row in m)
            owners.extend([i] * len(m))
        rows_unmasked = [unmasked[i] for i in owners]
        targets = self.targets(variants, [labels[i] for i in owners], rows_unmasked)
        out, start = [], 0
        for i, (text, y) in enumerate(zip(texts, labels)):
            m, s = masks[i], targets[start : start + len(masks[i])]
            start += len(m)
            full = unmasked[i]
            record = {
                "gold_prob": float(full[y].exp()),
                "gold_rank": int((full > full[y]).sum()),
                "n_masks": len(m),
                "nonfinite": False,
            }
            if m.shape[1] == 0:
                record |= {"prior": [], "phi": [], "r2": 0.0, "solver": "none"}
            elif not torch.isfinite(s).all():
                if c["nonfinite"] == "raise":
                    raise FloatingPointError(
                        f"teacher {c['teacher_path']!r} gave non-finite {c['target']} targets for text {text!r} "
                        f"(label {self.label_names[y]!r}); use target='gold_prob', or nonfinite='zero' to give such "
                        "texts an all-zero prior"
                    )
                record |= {"prior": [0.0] * m.shape[1], "phi": [0.0] * m.shape[1], "r2": 0.0, "solver": "none"}
                record["nonfinite"] = True
            else:
                fit = weighted_ridge(m, s, lime_kernel(m, c["kernel_width"]), c["ridge_lambda"])
                prior = normalise_word_scores(fit.coef)
                record |= {"prior": prior.tolist(), "phi": fit.coef.tolist(), "r2": fit.r2, "solver": fit.solver}
            out.append(record)
        return out

    def diagnostics(self, texts: Sequence[str], labels: Sequence[int]) -> dict[str, list] | None:
        if self._namespace is None:
            return None
        records = {**(self.store.load() if self.store is not None else {}), **self.records}
        rows = [records.get(example_key(self._namespace, t, int(y))) for t, y in zip(texts, labels)]
        if any(r is None for r in rows):
            return None
        fields = ("gold_prob", "gold_rank", "r2", "n_masks", "nonfinite")
        return {f: [r[f] for r in rows] for f in fields}
