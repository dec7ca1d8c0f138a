"""TruthfulQA as multiple choice: MC1, MC2 and the binary variant from local files or the Hugging Face hub.

Design decisions:
- ``variant="mc"`` reads ``mc_task.json`` (817 questions; the MC1 true answer is listed first upstream, which does
  not matter for likelihood scoring). Binary = the MC1 true answer vs one MC1 false answer drawn with a per-question
  seeded generator, like EleutherAI ``truthful_qa_binary``. The steering pair is that same (true, false) pair.
- ``variant="binary_2025"`` reads the Jan-2025 CSV: binary = Best Answer vs Best Incorrect Answer (the upstream
  binary setting), MC2 over the ``;``-separated correct / incorrect lists, MC1 = Best Answer vs the incorrect list.
- ``data_dir`` is the folder holding ``TruthfulQA/`` and ``binary_2025/`` (``../shared/data/truthfulqa``; the parent
  ``../shared/data`` works too). ``None`` loads ``truthfulqa/truthful_qa`` (``multiple_choice``) from the hub.
- A file with missing keys/columns, or a row whose mc1 / mc2 targets lack a true or a false answer, is a
  ``ValueError`` naming the file and the row, raised before any model is loaded.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Literal

from lmcore.choices import check_choice, choices
from steering.tasks.prompts import format_answer, format_prompt
from steering.tasks.types import MCExample

Variant = Literal["mc", "binary_2025"]
VARIANTS = choices(Variant)
HUB_ID = "truthfulqa/truthful_qa"
MC_KEYS = ("question", "mc1_targets", "mc2_targets")
CSV_COLUMNS = ("Question", "Best Answer", "Best Incorrect Answer", "Correct Answers", "Incorrect Answers")


def _find(data_dir: Path, rel: str) -> Path:
    for base in (data_dir, data_dir / "truthfulqa"):
        if (base / rel).is_file():
            return base / rel
    raise FileNotFoundError(f"{rel} not found under {data_dir} (expected e.g. data_dir='../shared/data/truthfulqa')")


def _load_mc_rows(data_dir: str | None) -> tuple[list[dict], str]:
    if data_dir is None:
        from datasets import load_dataset

        rows = load_dataset(HUB_ID, "multiple_choice", split="validation")
        return [{"question": r["question"],
                 "mc1_targets": dict(zip(r["mc1_targets"]["choices"], r["mc1_targets"]["labels"])),
                 "mc2_targets": dict(zip(r["mc2_targets"]["choices"], r["mc2_targets"]["labels"]))}
                for r in rows], f"{HUB_ID} (multiple_choice, validation)"  # fmt: skip
    path = _find(Path(data_dir), "TruthfulQA/data/mc_task.json")
    rows = json.loads(path.read_text(encoding="utf-8"))
    for i, row in enumerate(rows):
        missing = [k for k in MC_KEYS if k not in row]
        if missing:
            raise ValueError(f"{path} row {i} is missing keys {missing}; expected {list(MC_KEYS)}")
    return rows, str(path)


def _unique(answers: list[str]) -> list[str]:
    return list(dict.fromkeys(a.strip() for a in answers if a.strip()))


def _check_targets(row: dict, i: int, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and row ``i`` unless mc1 / mc2 each hold a true and a false answer."""
    for key in ("mc1_targets", "mc2_targets"):
        targets = row[key]
        if not isinstance(targets, dict):
            problem = f"{key} is a {type(targets).__name__}, not an {{answer: label}} mapping"
        elif not targets:
            problem = f"{key} is empty"
        elif not _unique([a for a, y in targets.items() if y == 1]):
            problem = f"{key} has no true answer (label 1)"
        elif not _unique([a for a, y in targets.items() if y == 0]):
            problem = f"{key} has no false answer (label 0)"
        else:
            continue
        raise ValueError(
            f"{source}: row {i} ({str(row.get('question'))[:60]!r}): {problem}; every row needs at least "
            "one non-empty true and one false answer in mc1_targets and mc2_targets: fix or drop the row"
        )


def _mc_example(
    row: dict, i: int, tokenizer, chat_template: bool, seed: int, source: str, qa_primer: bool
) -> MCExample:
    _check_targets(row, i, source)
    mc1_true = [a for a, y in row["mc1_targets"].items() if y == 1]
    mc1_false = [a for a, y in row["mc1_targets"].items() if y == 0]
    mc2_true = [a for a, y in row["mc2_targets"].items() if y == 1]
    mc2_false = [a for a, y in row["mc2_targets"].items() if y == 0]
    raw = _unique(mc1_true + mc1_false + mc2_true + mc2_false)
    index = {a: j for j, a in enumerate(raw)}
    binary_false = random.Random(seed * 1_000_003 + i).choice(_unique(mc1_false))
    targets = {
        "mc1": ((index[mc1_true[0].strip()],), tuple(index[a.strip()] for a in mc1_false)),
        "mc2": (tuple(index[a] for a in _unique(mc2_true)), tuple(index[a] for a in _unique(mc2_false))),
        "binary": ((index[mc1_true[0].strip()],), (index[binary_false],)),
    }
    choices = tuple(format_answer(a, chat_template) for a in raw)
    prompt = format_prompt(tokenizer, row["question"], chat_template, qa_primer=qa_primer)
    return MCExample(prompt, choices, targets, (targets["binary"][0][0], targets["binary"][1][0]),
                     meta={"row": i, "question": row["question"]})  # fmt: skip


def _binary_2025_examples(data_dir: str, tokenizer, chat_template: bool, qa_primer: bool) -> list[MCExample]:
    path = _find(Path(data_dir), "binary_2025/TruthfulQA.csv")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is missing columns {missing}; has {reader.fieldnames}")
        rows = list(reader)
    out = []
    for i, r in enumerate(rows):
        best, worst = r["Best Answer"].strip(), r["Best Incorrect Answer"].strip()
        true = _unique([best] + r["Correct Answers"].split(";"))
        false = _unique([worst] + r["Incorrect Answers"].split(";"))
        false = [a for a in false if a not in true]
        raw = true + false
        if worst not in raw:
            continue  # the best incorrect answer is also listed as correct: no binary contrast
        idx = {a: j for j, a in enumerate(raw)}
        targets = {
            "mc1": ((idx[best],), tuple(idx[a] for a in false)),
            "mc2": (tuple(idx[a] for a in true), tuple(idx[a] for a in false)),
            "binary": ((idx[best],), (idx[worst],)),
        }
        choices = tuple(format_answer(a, chat_template) for a in raw)
        prompt = format_prompt(tokenizer, r["Question"], chat_template, qa_primer=qa_primer)
        out.append(MCExample(prompt, choices, targets,
                             (idx[best], idx[worst]), meta={"row": i, "question": r["Question"]}))  # fmt: skip
    return out


def load_truthfulqa(
    tokenizer,
    data_dir: str | None = None,
    variant: Variant = "mc",
    chat_template: bool = False,
    seed: int = 0,
    qa_primer: bool = False,
) -> list[MCExample]:
    """TruthfulQA questions as ``MCExample`` (targets ``mc1``, ``mc2``, ``binary``), in file order; ``qa_primer``
    puts the paper's six-question QA primer before each question (``prompts.QA_PRIMER``)."""
    check_choice("variant", variant, Variant)
    if variant == "binary_2025":
        if data_dir is None:
            raise ValueError("variant 'binary_2025' is read from local files only; pass data_dir")
        return _binary_2025_examples(data_dir, tokenizer, chat_template, qa_primer)
    rows, source = _load_mc_rows(data_dir)
    return [_mc_example(r, i, tokenizer, chat_template, seed, source, qa_primer) for i, r in enumerate(rows)]
