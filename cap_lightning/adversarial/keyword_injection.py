"""LLM keyword injection (the paper's adversarial protocol, docs/cap.md §3.3): rewrite an utterance of class y so it
mentions keywords typical of a confusable class y′ while keeping intent y, then keep only valid rewrites.

Steps:
1. confusable pairs from the baseline's (= victim's) confusion matrix on ``pairs_split`` (validation by default,
   so the test set is not used to choose the attack): y′ = argmax over y′ ≠ y of the symmetric confusion
   ``cm[y][y′] + cm[y′][y]``; a class never confused with anything gets no partner and its rows are not rewritten
   (nor are rows whose partner class has no keyword left; both counted in the manifest);
2. keywords of each class from the training texts: words (lowercase, alphabetic, ≥ 3 letters) ranked by
   ``df(w | class) − df(w | other classes)`` (document frequencies) among words with lift ``P(w|class)/P(w) ≥ 2``,
   which needs no stopword list: function words are frequent everywhere, so their lift is low;
3. a causal LM (any HF model; the bundled SmolLM2-135M-Instruct here) rewrites each utterance with the versioned
   prompt :data:`PROMPT_TEMPLATE` (chat template when the tokenizer has one), greedy decoding;
4. the validity filter :func:`validity_reason` drops rewrites that are empty or unchanged, contain none of the
   keywords, echo the prompt, change the length too much, or lose too much of the original content words (a proxy
   for "intent kept");
   rejection counts per reason go into the manifest;
5. statuses against the victim: ``skipped`` (victim wrong on the clean text), ``successful`` (right on clean, wrong on
   the rewrite), ``failed`` (right on both).

Design decisions:
- Versioning: :data:`PROMPT_VERSION` and the SHA-256 of the template are part of the cache key; the output gets a
  manifest ``<out>.manifest.json`` with the prompt, generator identity (weights hash), decoding settings, pairs,
  keywords, filter settings, rejection counts and the SHA-256 of the generated set. Commit the set + manifest to
  freeze it.
- Pure functions (confusion matrix, pairs, keywords, prompt, clean-up, filter) are separate from the model calls,
  so they are tested without an LLM. The run (victim checks, cache key, resumable chunks, split file, manifest) is
  the shared one of ``generator.py``; :class:`KeywordInjectionGenerator` holds only the steps above.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cap_lightning.adversarial.format import AdversarialExample
from cap_lightning.adversarial.generator import (
    DEFAULT_CACHE,
    AttackGenerator,
    GenerationResult,
    LoadedVictim,
    Run,
    generate,
)
from cap_lightning.adversarial.metrics import RobustnessReport
from cap_lightning.adversarial.source import Selection
from cap_lightning.classifier import predict_logits, weights_sha256
from cap_lightning.datasets import LabelledSplits, data_fingerprint
from lmcore.attention_backends import variable_length_attention
from lmcore.choices import check_choice
from lmcore.io import atomic_write_text

RECIPE = "llm_keyword_injection"
PROMPT_VERSION = "kwinj-v2"
SYSTEM_PROMPT = "You rewrite short customer messages. Reply with the rewritten message only, nothing else."
PROMPT_TEMPLATE = (
    "Rewrite the message below so that it naturally uses these words: {keywords}.\n"
    "Keep the same request: the customer wants help with '{intent}', not with '{confusable}'.\n"
    'Example: "I lost my card." with the word "transfer" becomes "I lost my card right after a transfer."\n'
    "Message: {text}\n"
    "Rewritten message:"
)
# words of the prompt that a valid rewrite does not contain unless the original does (the LM echoed the prompt)
ECHO_WORDS: tuple[str, ...] = ("rewrite", "rewritten", "customer", "message", "keywords", "words", "request")
PROMPT_SHA256 = hashlib.sha256(f"{SYSTEM_PROMPT}\n{PROMPT_TEMPLATE}".encode()).hexdigest()
PairsSplit = Literal["validation", "train", "test"]
REJECT_REASONS: tuple[str, ...] = ("empty", "unchanged", "prompt_echo", "no_keyword", "length", "content_lost")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class InjectionConfig:
    """Generator and filter settings (all part of the cache key).

    Attributes:
        generator: causal LM: short name (``smollm2-135m``), HF folder or hub id.
        n_keywords: keywords of y′ offered to the LM.
        max_new_tokens: generation length.
        gen_batch_size: prompts per generation batch.
        min_content_overlap: share of the original's content words (≥ 3 letters) the rewrite must keep.
        max_length_ratio: rewrite words / original words must lie in [1 / ratio, ratio].
        min_lift: keyword lift threshold ``P(w|class) / P(w)`` (:func:`class_keywords`).
    """

    generator: str = "smollm2-135m"
    n_keywords: int = 3
    max_new_tokens: int = 48
    gen_batch_size: int = 8
    min_content_overlap: float = 0.5
    max_length_ratio: float = 3.0
    min_lift: float = 2.0

    def __post_init__(self) -> None:
        if self.n_keywords < 1 or self.max_new_tokens < 1 or self.gen_batch_size < 1:
            raise ValueError(f"n_keywords, max_new_tokens and gen_batch_size must be >= 1: {self}")
        if not 0.0 <= self.min_content_overlap <= 1.0:
            raise ValueError(f"min_content_overlap must be in [0, 1], got {self.min_content_overlap}")
        if self.max_length_ratio < 1.0:
            raise ValueError(f"max_length_ratio must be >= 1, got {self.max_length_ratio}")


# ------------------------------------------------------------------------------------------------ pure functions
def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_labels: int) -> list[list[int]]:
    """``cm[y][p]`` = number of rows with gold ``y`` predicted ``p``."""
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    cm = [[0] * num_labels for _ in range(num_labels)]
    for y, p in zip(labels, preds):
        cm[int(y)][int(p)] += 1
    return cm


def confusable_pairs(cm: Sequence[Sequence[int]]) -> dict[int, int]:
    """For each class y, the class y′ ≠ y it is most confused with (symmetric counts; ties → smaller id).

    Classes with no confusion at all are absent from the result.
    """
    pairs = {}
    n = len(cm)
    for y in range(n):
        scores = [(cm[y][j] + cm[j][y], -j) for j in range(n) if j != y]
        if not scores:
            continue
        best, neg_j = max(scores)
        if best > 0:
            pairs[y] = -neg_j
    return pairs


def words(text: str) -> list[str]:
    """Lowercase alphabetic words of at least 3 letters."""
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3]


def class_keywords(
    texts: Sequence[str], labels: Sequence[int], num_labels: int, k: int, min_lift: float = 2.0
) -> list[list[str]]:
    """Top-``k`` distinctive words per class by ``df(w|class) − df(w|rest)``, keeping words whose lift
    ``P(w|class) / P(w)`` is at least ``min_lift`` (drops function words that happen to be frequent in a small
    class); ties → alphabetical."""
    per_class = [Counter() for _ in range(num_labels)]
    sizes = Counter(int(y) for y in labels)
    total = Counter()
    for text, y in zip(texts, labels):
        unique = set(words(text))
        per_class[int(y)].update(unique)
        total.update(unique)
    out = []
    n = len(texts)
    for c in range(num_labels):
        n_c, n_rest = sizes[c], n - sizes[c]
        if n_c == 0:
            out.append([])
            continue
        scored = []
        for w, df in per_class[c].items():
            rest = (total[w] - df) / n_rest if n_rest else 0.0
            score = df / n_c - rest
            if score > 0 and (df / n_c) / (total[w] / n) >= min_lift:
                scored.append((-score, w))
        out.append([w for _, w in sorted(scored)[:k]])
    return out


def readable(label_name: str) -> str:
    return label_name.replace("_", " ")


def build_prompt(text: str, intent: str, confusable: str, keywords: Sequence[str]) -> str:
    return PROMPT_TEMPLATE.format(
        keywords=", ".join(keywords), intent=readable(intent), confusable=readable(confusable), text=text
    )


def clean_generation(raw: str) -> str:
    """First non-empty line, without a leading ``Rewritten message:`` and surrounding quotes."""
    for line in raw.strip().splitlines():
        line = re.sub(r"^\s*(rewritten message|message)\s*:\s*", "", line.strip(), flags=re.I).strip()
        line = line.strip("\"'“”` ").strip()
        if line:
            return line
    return ""


def validity_reason(original: str, rewritten: str, keywords: Sequence[str], config: InjectionConfig) -> str | None:
    """Why ``rewritten`` is not a valid injection of ``original`` (one of :data:`REJECT_REASONS`), or None."""
    if not rewritten.strip():
        return "empty"
    if rewritten.strip().lower() == original.strip().lower():
        return "unchanged"
    new_words = set(words(rewritten))
    if any(w in new_words and w not in set(words(original)) for w in ECHO_WORDS):
        return "prompt_echo"
    if not any(k.lower() in new_words for k in keywords):
        return "no_keyword"
    n_old, n_new = max(1, len(original.split())), max(1, len(rewritten.split()))
    if not 1.0 / config.max_length_ratio <= n_new / n_old <= config.max_length_ratio:
        return "length"
    content = set(words(original))
    if content and len(content & new_words) / len(content) < config.min_content_overlap:
        return "content_lost"
    return None


def victim_status(clean_ok: bool, rewritten_ok: bool) -> str:
    if not clean_ok:
        return "skipped"
    return "failed" if rewritten_ok else "successful"


# --------------------------------------------------------------------------------------------------- model calls
@variable_length_attention()
def generate_rewrites(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of ``prompts`` (chat template with :data:`SYSTEM_PROMPT` when available)."""
    import torch

    if getattr(tokenizer, "chat_template", None):
        inputs = [
            tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in prompts
        ]
    else:
        inputs = [f"{SYSTEM_PROMPT}\n{p} " for p in prompts]
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    for i in range(0, len(inputs), batch_size):
        enc = tokenizer(inputs[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        out.extend(tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def _generator_identity(generator: str) -> dict:
    from lmcore.models import resolve_model_path

    resolved = resolve_model_path(generator)
    if Path(resolved).is_dir():
        return {"generator": generator, "sha256": weights_sha256(resolved)}
    return {"generator": generator, "sha256": None}


class KeywordInjectionGenerator(AttackGenerator):
    """The keyword-injection steps (module doc) as an :class:`~cap_lightning.adversarial.generator.AttackGenerator`.

    Args:
        splits: the dataset: ``pairs_split`` gives the confusable pairs, train the keywords, and label names.
        config: generator and filter settings.
        pairs_split: split whose confusion matrix (under the victim) gives the confusable pairs.
    """

    def __init__(self, splits: LabelledSplits, config: InjectionConfig, pairs_split: PairsSplit) -> None:
        self.splits, self.config, self.pairs_split = splits, config, pairs_split
        self.label_source = f"dataset {splits.name}"
        self._state: dict = {}

    def preflight(self) -> None:
        check_choice("pairs_split", self.pairs_split, PairsSplit)

    def describe(self, selection: Selection) -> dict:
        return {
            "generator": "keyword_injection",
            "format_version": 1,
            "recipe": RECIPE,
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": PROMPT_SHA256,
            "config": asdict(self.config),
            "llm": _generator_identity(self.config.generator),
            "pairs_split": self.pairs_split,
            "pairs_fingerprint": data_fingerprint(getattr(self.splits, self.pairs_split)),
            "keywords_fingerprint": data_fingerprint(self.splits.train),
        }

    def progress_label(self, selection: Selection) -> str:
        return RECIPE

    def prepare(self, run: Run, victim: LoadedVictim) -> None:
        splits, config = self.splits, self.config
        pool = getattr(splits, self.pairs_split)
        texts = [e.text for e in pool]
        pool_pred = predict_logits(victim.model, victim.tokenizer, texts, run.max_length, run.batch_size).argmax(-1)
        cm = confusion_matrix([e.label for e in pool], pool_pred.tolist(), splits.num_labels)
        train = splits.train
        keywords = class_keywords(
            [e.text for e in train], [e.label for e in train], splits.num_labels, 50, config.min_lift
        )
        from lmcore.models import load_causal_lm, load_tokenizer

        self._state.update(
            victim=(victim.model, victim.tokenizer), correct=victim.correct, pairs=confusable_pairs(cm),
            keywords=keywords, llm=(load_causal_lm(config.generator), load_tokenizer(config.generator)),
        )  # fmt: skip

    def _offered(self, y: int) -> list[str]:
        """Keywords of y's confusable class that do not already occur in class y's own keyword list."""
        state, n = self._state, self.config.n_keywords
        own = set(state["keywords"][y][: 3 * n])
        partner = state["pairs"][y]
        return [w for w in state["keywords"][partner] if w not in own][:n]

    def attack(self, run: Run, positions: range) -> list[AdversarialExample]:
        state, config, names, examples = self._state, self.config, self.splits.label_names, run.selection.examples
        paired = [p for p in positions if examples[p].label in state["pairs"]]
        todo = [p for p in paired if self._offered(examples[p].label)]
        prompts, kws = [], []
        for p in todo:
            e = examples[p]
            kws.append(self._offered(e.label))
            prompts.append(build_prompt(e.text, names[e.label], names[state["pairs"][e.label]], kws[-1]))
        raw = generate_rewrites(*state["llm"], prompts, config.max_new_tokens, config.gen_batch_size) if todo else []
        rejected: Counter = Counter(
            {"no_partner": len(positions) - len(paired), "no_keywords": len(paired) - len(todo)}
        )
        kept = []
        for p, kw, text in zip(todo, kws, map(clean_generation, raw)):
            reason = validity_reason(examples[p].text, text, kw, config)
            if reason:
                rejected[reason] += 1
            else:
                kept.append((p, text))
        model, tokenizer = state["victim"]
        texts = [t for _, t in kept]
        preds = predict_logits(model, tokenizer, texts, run.max_length, run.batch_size).argmax(-1).tolist()
        rows = []
        for (p, text), pred in zip(kept, preds):
            e = examples[p]
            status = victim_status(state["correct"][p], pred == e.label)
            rows.append(AdversarialExample(text, e.label, e.text, RECIPE, status, None, run.selection.indices[p]))
        chunk = positions.start // run.store.chunk_size
        atomic_write_text(run.store.folder / f"rejected-{chunk:05d}.json", json.dumps(dict(rejected)))
        offered = {y: self._offered(y) for y in state["pairs"]}
        meta = json.dumps({"pairs": state["pairs"], "keywords": offered})
        atomic_write_text(run.store.folder / f"meta-{chunk:05d}.json", meta)
        return rows

    def check(self, run: Run, rows: list[AdversarialExample]) -> None:
        if not rows:
            raise ValueError(
                f"the validity filter rejected every rewrite; see the rejected-*.json files in {run.store.folder}"
            )

    def manifest(self, run: Run, rows: list[AdversarialExample], report: RobustnessReport) -> dict:
        names, folder = self.splits.label_names, run.store.folder
        rejected: Counter = Counter()
        for file in sorted(folder.glob("rejected-*.json")):
            rejected.update(json.loads(file.read_text()))
        extra: dict = {}
        for file in sorted(folder.glob("meta-*.json")):
            extra = json.loads(file.read_text())
        return {
            "system_prompt": SYSTEM_PROMPT,
            "prompt_template": PROMPT_TEMPLATE,
            "decoding": {"do_sample": False, "max_new_tokens": self.config.max_new_tokens},
            "confusable_pairs": {names[int(y)]: names[int(c)] for y, c in extra.get("pairs", {}).items()},
            "keywords_offered": {names[int(y)]: k for y, k in extra.get("keywords", {}).items()},
            "n_source": len(run.selection.indices),
            "n_kept": len(rows),
            "rejected": dict(rejected),
        }


def generate_injection(
    victim: str,
    splits: LabelledSplits,
    selection: Selection,
    config: InjectionConfig = InjectionConfig(),
    *,
    pairs_split: PairsSplit = "validation",
    seed: int = 0,
    out: str | Path | None = None,
    cache_dir: str | Path = DEFAULT_CACHE,
    chunk_size: int = 10,
    max_length: int = 64,
    batch_size: int = 32,
    progress: bool = True,
) -> GenerationResult:
    """Build the keyword-injection split of ``selection`` against the baseline ``victim``; see the module doc."""
    generator = KeywordInjectionGenerator(splits, config, pairs_split)
    return generate(
        generator, victim, selection, splits.label_names, seed=seed, out=out, cache_dir=cache_dir,
        chunk_size=chunk_size, max_length=max_length, batch_size=batch_size, progress=progress,
    )  # fmt: skip
