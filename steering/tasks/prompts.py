"""Prompt and answer formatting shared by the text tasks: ``Q: …\\nA:`` or the tokenizer's chat template."""

from __future__ import annotations


def format_prompt(tokenizer, question: str, chat_template: bool, system: str | None = None) -> str:
    """``Q: {question}\\nA:`` or the tokenizer's chat template with a generation prompt (answers follow it)."""
    if not chat_template:
        return f"Q: {question}\nA:"
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"chat_template=True but the tokenizer {type(tokenizer).__name__} has no chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def format_answer(answer: str, chat_template: bool) -> str:
    """Answers follow ``A:`` after a space; after a chat template's assistant header they start directly."""
    answer = answer.strip()
    return answer if chat_template else " " + answer
