"""SPA-VL preference accuracy: log p(chosen | image, question) > log p(rejected | image, question).

Design decisions: the released GrAInS code's VLM metric (docs/grains.md §2.7) — the paper's win rate needs a judge and
fixed references, which are not recovered. Loaded from the hub (``sqrti/SPA-VL``, config ``validation``; not
available offline) or a local JSONL with ``image`` (a path) ``question``, ``chosen``, ``rejected``. Images go through
the model's processor (``model_path``), so image tokens carry image content. The steering pair is (chosen, rejected).
"""

from __future__ import annotations

import json
from pathlib import Path

from steering.tasks.prompts import format_answer
from steering.tasks.types import MCExample
from steering.tasks.vlm_inputs import image_inputs, load_processor

HUB_ID = "sqrti/SPA-VL"
COLUMNS = ("image", "question", "chosen", "rejected")
PROMPT = "USER: <image>\n{question} ASSISTANT:"


def _rows(data_file: str | None, limit: int | None) -> list[dict]:
    if data_file is None:
        from datasets import load_dataset

        rows = load_dataset(HUB_ID, "validation", split="validation")
        return [rows[i] for i in range(len(rows) if limit is None else min(limit, len(rows)))]
    path = Path(data_file)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path} is missing columns {missing}; has {sorted(rows[0])}")
    from PIL import Image

    for r in rows:
        r["image"] = Image.open(path.parent / r["image"]).convert("RGB")
    return rows[:limit]


def load_spa_vl(
    tokenizer, model_path: str, data_file: str | None = None, limit: int | None = None, prompt: str = PROMPT
) -> list[MCExample]:
    """SPA-VL rows as ``MCExample`` with target ``preference`` (chosen vs rejected) and the image fed."""
    processor = load_processor(model_path)
    out = []
    for i, r in enumerate(_rows(data_file, limit)):
        text, pixels, extra = image_inputs(processor, r["image"], prompt.format(question=r["question"]))
        choices = (format_answer(r["chosen"], False), format_answer(r["rejected"], False))
        out.append(MCExample(text, choices, {"preference": ((0,), (1,))}, (0, 1), pixels, {"row": i}, extra))
    return out
