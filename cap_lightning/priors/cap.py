"""``ClassAwarePrior``: the paper's CAP — a frozen LLM teacher that sees the whole label space scores masked
variants of each text; a LIME-kernel weighted ridge over the masks gives per-word importances (docs/cap.md §1.2, §7).

Design decisions:
- Prompt: instruction + enumerated label names (``_`` → space) + the (masked) text + answer marker (``teacher.py``).
  Each of ``instruction``, ``text_prefix``, ``answer_prefix`` left None is taken from the data module's
  ``teacher_prompt`` (``set_data_defaults``, called by ``PriorCacheCallback``); the effective prompt is part of
  ``config()``, so an explicit prompt and the same prompt from the data share cache entries. The target is
  the teacher's confidence in the gold label name (``target``: ``gold_prob`` (canonical), ``gold_logprob``,
  ``label_softmax`` over all labels, or ``contrastive_k``: gold log-prob minus the logsumexp of the K labels the
  teacher ranks highest on the unmasked text).
- Labels that are token prefixes of other labels are scored followed by the answer's end marker (``end_marker``,
  ``teacher.py``), so p(label) is that label's probability and not its prefix's. ``end_marker`` enters ``config()``
  (and so the cache keys) only where it can change a score: when it is on and a label name in use is a string
  prefix of another (``teacher.has_prefix_names``; the data module's label names come through
  ``set_data_defaults``). Keys of label sets without such a pair, and of ``end_marker=False``, are unchanged.
- Masks: ``masks.perturb`` (``loo+lime`` by default, M = min(n_samples, 2ⁿ), deterministic per (seed, text)).
  Surrogate: ``ridge.weighted_ridge`` on the LIME kernel, fp64 Cholesky with fallbacks. Prior = relu(φ) / max.
- Speed: all masked variants of a chunk of texts go through one ``TeacherScorer.score`` call (shared prefix
  KV-cached, variants packed); nothing is generated.
- Every result is also stored per example (``store.py``), keyed by the teacher weights, every setting and the
  label names, so few-shot seeds that share texts share their CAP scores.
- Diagnostics per example, stored with the scores: the teacher's unmasked gold confidence, its gold-label rank
  (0 = the teacher would pick the gold label), the surrogate's weighted R² and the solver used.
- Bad input, before the teacher runs: label names the teacher tokenizer cannot encode, gold labels outside the
  label names, a label list of the wrong length, a prompt piece neither given nor in the data module. Texts with
  no words get an empty prior; a one-word text is scored on its two masks. Non-finite teacher targets raise
  (``nonfinite='raise'``) or give that example an all-zero prior, counted in the diagnostics (``'zero'``); a NaN
  prior is never produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cap_lightning.priors.base import AttributionPrior, normalise_word_scores
from cap_lightning.priors.masks import MaskStrategy, perturb
from cap_lightning.priors.ridge import lime_kernel, weighted_ridge
from cap_lightning.priors.store import ExampleStore, Record, example_key, lookup_or_compute, store_namespace
from lmcore.choices import check_choice

Target = Literal["gold_prob", "gold_logprob", "label_softmax", "contrastive_k"]
TeacherDtype = Literal["float32", "bfloat16", "float16"]
NonFinite = Literal["raise", "zero"]
PROMPT_FIELDS = ("instruction", "text_prefix", "answer_prefix")


class ClassAwarePrior(AttributionPrior):
    """Class-Aware Attribution Prior from a frozen causal-LM teacher.

    Args:
        teacher_path: the teacher: short name (``smollm2-135m``), HF folder or hub id (paper: a LLaMA instruct model).
        instruction: first line of the prompt, before the label list; None takes the data module's teacher prompt.
        text_prefix: marker before the text (``Utterance:``); None: the data module's.
        answer_prefix: marker after the text, followed by the label name (``Intent:``); None: the data module's.
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
        end_marker: score a label that is a token prefix of another label followed by the end of the answer (a
            newline; EOS with a chat template), so ``email query`` is not scored as a prefix of ``email querycontact``.
        nonfinite: ``raise`` | ``zero`` for an example whose teacher targets are NaN/inf.
        example_cache_dir: folder of the per-example store shared across splits and seeds (None: off).
    """

    caches_examples = True
    runtime_args = ("batch_size", "max_tokens", "example_cache_dir")
    conditional_args = ("end_marker",)
    cache_name = "cap_lightning.cap_prior.ClassAwarePrior"

    def __init__(
        self,
        teacher_path: str = "smollm2-135m",
        instruction: str | None = None,
        text_prefix: str | None = None,
        answer_prefix: str | None = None,
        chat_template: bool = False,
        label_names: list[str] | None = None,
        mask_strategy: MaskStrategy = "loo+lime",
        n_samples: int = 64,
        kernel_width: float = 25.0,
        ridge_lambda: float = 1.0,
        target: Target = "gold_prob",
        contrastive_k: int = 3,
        mask_token: str = "delete",
        seed: int = 0,
        batch_size: int = 64,
        max_tokens: int = 2048,
        teacher_dtype: TeacherDtype = "float32",
        nonfinite: NonFinite = "raise",
        end_marker: bool = True,
        example_cache_dir: str | None = "cache/cap_examples",
    ) -> None:
        check_choice("mask_strategy", mask_strategy, MaskStrategy)
        check_choice("target", target, Target)
        check_choice("nonfinite", nonfinite, NonFinite)
        check_choice("teacher_dtype", teacher_dtype, TeacherDtype)
        for name, value, least in (("n_samples", n_samples, 2), ("contrastive_k", contrastive_k, 1),
                                   ("batch_size", batch_size, 1)):  # fmt: skip
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if kernel_width <= 0 or ridge_lambda <= 0:
            raise ValueError(f"kernel_width and ridge_lambda must be > 0, got {kernel_width}, {ridge_lambda}")
        if not mask_token.strip():
            raise ValueError("mask_token must be 'delete' or a non-blank replacement string")
        from lmcore.models import resolve_model_path

        resolve_model_path(teacher_path)  # a clear error for a bad path now
        self.teacher_path, self.chat_template = str(teacher_path), chat_template
        self.instruction, self.text_prefix, self.answer_prefix = instruction, text_prefix, answer_prefix
        self.label_names = list(label_names) if label_names is not None else None
        self.mask_strategy, self.n_samples, self.kernel_width = mask_strategy, n_samples, kernel_width
        self.ridge_lambda, self.target, self.contrastive_k = ridge_lambda, target, contrastive_k
        self.mask_token, self.seed, self.teacher_dtype, self.nonfinite = mask_token, seed, teacher_dtype, nonfinite
        self.batch_size, self.max_tokens, self.example_cache_dir = batch_size, max_tokens, example_cache_dir
        self.end_marker = end_marker
        self.data_label_names: list[str] | None = None  # the data module's (set_data_defaults)
        self.store = ExampleStore(example_cache_dir) if example_cache_dir else None
        self.data_prompt: Any = None  # the data module's teacher prompt (set_data_defaults)
        self.scorer = None
        self.class_names: list[str] | None = None  # the label names in use (prepare)
        self.records: dict[str, Record] = {}
        self._namespace: str | None = None

    def set_data_defaults(self, teacher_prompt: Any = None, label_names: Sequence[str] | None = None) -> None:
        self.data_prompt = teacher_prompt
        self.data_label_names = list(label_names) if label_names is not None else None

    def prompt(self) -> dict[str, str | None]:
        """The prompt pieces in use: each one given here, else the data module's teacher prompt's (None: neither)."""
        mine = {f: getattr(self, f) for f in PROMPT_FIELDS}
        return {f: v if v is not None else getattr(self.data_prompt, f, None) for f, v in mine.items()}

    def names_in_use(self) -> list[str] | None:
        """The label names the teacher scores: set by ``prepare``, else ``label_names``, else the data module's."""
        return self.class_names or self.label_names or self.data_label_names

    def config(self) -> dict[str, Any]:
        from cap_lightning.priors.teacher import has_prefix_names

        config = super().config() | self.prompt()
        if not (self.end_marker and has_prefix_names(self.names_in_use() or [])):
            config.pop("end_marker")  # it changes no score: the keys of earlier versions stay valid
        return config

    # ------------------------------------------------------------------------------------------- set-up
    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        names = self.label_names or (list(label_names) if label_names is not None else None)
        if names is None:
            raise ValueError("ClassAwarePrior needs label names: set label_names, or use a data module that has them")
        if len(names) != num_labels:
            raise ValueError(
                f"{len(names)} label names for {num_labels} labels: {names}; give one name per label "
                "(ClassAwarePrior label_names, or leave it unset to take the data module's)"
            )
        bad = sorted({int(y) for y in labels if not 0 <= int(y) < len(names)})
        if bad:
            raise ValueError(
                f"gold labels {bad} are missing from the {len(names)} label names (valid: 0..{len(names) - 1})"
            )
        missing = [f for f, v in self.prompt().items() if v is None]
        if missing:
            raise ValueError(
                f"ClassAwarePrior has no {', '.join(missing)}: set {'them' if len(missing) > 1 else 'it'} in its "
                "init_args, or use a data module with a teacher_prompt (the built-in datasets have one)"
            )
        self.class_names = list(names)
        self._namespace = store_namespace(self.cache_key(), self.class_names)
        if self.scorer is None:
            self.scorer = self.build_scorer(device)

    def build_scorer(self, device: torch.device, use_prefix_cache: bool = True):
        """Load the teacher and validate the label names against its tokenizer."""
        from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts
        from lmcore.models import load_causal_lm, load_tokenizer

        tokenizer = load_tokenizer(self.teacher_path)
        parts = build_prompt_parts(self.class_names, **self.prompt(), tokenizer=tokenizer,
                                   chat_template=self.chat_template)  # fmt: skip
        TeacherScorer(None, tokenizer, parts, self.class_names)  # label names are checked before the weights load
        model = load_causal_lm(self.teacher_path, dtype=self.teacher_dtype).to(device)
        return TeacherScorer(
            model, tokenizer, parts, self.class_names, self.batch_size, self.max_tokens, use_prefix_cache,
            end_marker=self.end_marker,
        )  # fmt: skip

    def release(self) -> None:
        self.scorer = None

    # ------------------------------------------------------------------------------------------- compute
    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        if self.scorer is None or self._namespace is None:
            raise RuntimeError("ClassAwarePrior.prepare(...) must run before computing priors")
        keys = [example_key(self._namespace, t, int(y)) for t, y in zip(texts, labels)]

        def compute(todo: list[int]) -> list[Record]:
            return self.compute([texts[i] for i in todo], [int(labels[i]) for i in todo])

        records = lookup_or_compute(keys, texts, compute, self.store, memory=self.records)
        return [torch.tensor(r["prior"], dtype=torch.float32) for r in records]

    def targets(self, texts: Sequence[str], labels: Sequence[int], unmasked: Sequence[Tensor]) -> Tensor:
        """Teacher confidence in each text's gold label, float64 ``(N,)`` (``unmasked``: the all-label
        log-probabilities of each text's original, used by ``contrastive_k``)."""
        scorer = self.scorer
        if self.target in ("gold_prob", "gold_logprob"):
            logp = scorer.score(texts, labels)
            return logp.exp() if self.target == "gold_prob" else logp
        if self.target == "label_softmax":
            return torch.stack([scorer.label_logprobs(t).softmax(-1)[y] for t, y in zip(texts, labels)])
        rows, foils = [], []
        for t, y, full in zip(texts, labels, unmasked):
            ranked = [int(i) for i in full.argsort(descending=True) if int(i) != y][: self.contrastive_k]
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
        unmasked = [self.scorer.label_logprobs(t) for t in tqdm(texts, desc="teacher: label ranks", leave=False)]
        masks, variants = perturb(texts, self.mask_strategy, self.n_samples, self.seed, self.mask_token)
        owners = [i for i, m in enumerate(masks) for _ in range(len(m))]
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
                if self.nonfinite == "raise":
                    raise FloatingPointError(
                        f"teacher {self.teacher_path!r} gave non-finite {self.target} targets for text {text!r} "
                        f"(label {self.class_names[y]!r}); use target='gold_prob', or nonfinite='zero' to give such "
                        "texts an all-zero prior"
                    )
                record |= {"prior": [0.0] * m.shape[1], "phi": [0.0] * m.shape[1], "r2": 0.0, "solver": "none"}
                record["nonfinite"] = True
            else:
                fit = weighted_ridge(m, s, lime_kernel(m, self.kernel_width), self.ridge_lambda)
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
