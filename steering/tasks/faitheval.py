"""FaithEval-counterfactual as multiple choice: does the model answer from the (counterfactual) context?

Design decisions:
- Source: ``Salesforce/FaithEval-counterfactual-v1.0`` (split ``test``, 1,000 ARC-style questions whose context
  argues for an answer that contradicts world knowledge) from the hub, or a local ``.jsonl`` / ``.json`` /
  ``.parquet`` export of it (no copy is available offline here). Rows need ``question``, ``context``, ``choices``
  (``{"label": [...], "text": [...]}`` as on the hub, or a list of strings) and ``answerKey`` (a label, or an index
  into a list); anything else is a ``ValueError`` naming the file, the row and the missing or bad field.
- Prompt (INFERRED "faitheval-mc" template, docs/grains.md §3): ``Context: …`` then the question, and each option
  text is scored as the answer (sum log-likelihood, cloze style, no option letters), as for TruthfulQA.
- Targets: ``accuracy`` = the context-supported answer scores above every other option; ``binary`` = it beats one
  other option drawn with a per-question seeded generator, which is also the steering pair.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Literal

from lmcore.choices import check_choice
from steering.tasks.prompts import format_answer, format_prompt
from steering.tasks.types import MCExample

HUB_ID = "Salesforce/FaithEval-counterfactual-v1.0"
REQUIRED = ("question", "context", "choices", "answerKey")
SUFFIXES = (".jsonl", ".json", ".parquet")


def _rows(path: str | None) -> tuple[list[dict], str]:
    if path is None:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(HUB_ID, split="test")], HUB_ID
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"FaithEval file {p} does not exist (path=None loads {HUB_ID} from the hub)")
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()], str(p)
    if p.suffix == ".json":
        return list(json.loads(p.read_text(encoding="utf-8"))), str(p)
    if p.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(p).to_dict("records"), str(p)
    raise ValueError(f"FaithEval file {p} has suffix {p.suffix!r}; allowed: {list(SUFFIXES)}")


def _options(row: dict, where: str) -> tuple[list[str], int]:
    """The option texts and the index of the context-supported answer."""
    choices, key = row["choices"], row["answerKey"]
    if isinstance(choices, dict):
        labels, texts = [str(x) for x in choices.get("label", [])], [str(x) for x in choices.get("text", [])]
        if not texts or len(labels) != len(texts):
            raise ValueError(f"{where}: choices needs equal-length 'label' and 'text' lists, got {choices!r}")
        check_choice(f"{where}: answerKey", str(key), Literal[tuple(labels)])
        return texts, labels.index(str(key))
    texts = [str(x) for x in choices]
    letters = [chr(ord("A") + i) for i in range(len(texts))]
    if isinstance(key, int) or str(key).isdigit():
        index = int(key)
    elif str(key) in letters:
        index = letters.index(str(key))
    else:
        raise ValueError(f"{where}: answerKey {key!r} is neither an index nor a letter in {letters}")
    if not 0 <= index < len(texts):
        raise ValueError(f"{where}: answerKey {key!r} is outside the {len(texts)} choices")
    return texts, index


def load_faitheval(tokenizer, path: str | None = None, chat_template: bool = False, seed: int = 0) -> list[MCExample]:
    """FaithEval-counterfactual questions as ``MCExample`` (targets ``accuracy``, ``binary``), in file order."""
    rows, source = _rows(path)
    out = []
    for i, row in enumerate(rows):
        where = f"{source} row {i}"
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise ValueError(f"{where} is missing fields {missing}; has {sorted(row)}, needs {list(REQUIRED)}")
        texts, answer = _options(row, where)
        raw = list(dict.fromkeys(t.strip() for t in texts))
        if len(raw) < 2 or texts[answer].strip() not in raw:
            raise ValueError(f"{where}: needs at least 2 distinct options, got {texts}")
        gold = raw.index(texts[answer].strip())
        others = [j for j in range(len(raw)) if j != gold]
        rival = random.Random(seed * 1_000_003 + i).choice(others)
        question = f"Context: {str(row['context']).strip()}\n\nQuestion: {str(row['question']).strip()}"
        prompt = (
            format_prompt(tokenizer, question + "\nAnswer based on the context.", True)
            if chat_template
            else f"Context: {str(row['context']).strip()}\nQ: {str(row['question']).strip()}\nA:"
        )
        targets = {"accuracy": ((gold,), tuple(others)), "binary": ((gold,), (rival,))}
        choices = tuple(format_answer(t, chat_template) for t in raw)
        out.append(MCExample(prompt, choices, targets, (gold, rival), meta={"row": i, "id": row.get("id")}))
    if not out:
        raise ValueError(f"{source} has no rows")
    return out
