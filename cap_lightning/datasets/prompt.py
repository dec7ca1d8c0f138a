"""The CAP teacher's prompt for a dataset (docs/cap.md §1.2): what the LLM is asked, and how text and answer are marked.

Each built-in dataset carries one in its spec (``specs.py``); ``CapDataModule.teacher_prompt`` exposes it (or the
user's, for custom data), and ``ClassAwarePrior`` reads it from the data module by its three attributes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TeacherPrompt:
    """The prompt around a text: ``<instruction> <label list> <text_prefix> <text> <answer_prefix> <label>``.

    Attributes:
        instruction: The task, e.g. ``"Classify the banking customer query into exactly one of the following
            intents."``; the label names follow it.
        text_prefix: Marks the text, e.g. ``"Query:"``.
        answer_prefix: Marks the answer the teacher scores, e.g. ``"Intent:"``.
    """

    instruction: str
    text_prefix: str
    answer_prefix: str

    def __post_init__(self) -> None:
        empty = [
            name for name in ("instruction", "text_prefix", "answer_prefix") if not str(getattr(self, name)).strip()
        ]
        if empty:
            raise ValueError(f"TeacherPrompt: {empty} must not be empty")
