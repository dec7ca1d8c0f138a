"""Evaluation tasks for steering: each a loader returning ``MCExample`` rows, plus side-effect metrics.

``load_task(name, tokenizer, **options)`` is what ``SteeringDataModule`` calls; ``TASKS`` lists the names.
Layout: ``types`` (``MCExample``, ``GenExample``), ``prompts`` (formatting), ``scoring`` (``score_examples``),
``metrics`` (``choice_metrics``), ``generation`` (generate and judge), ``side_effects`` (KL, perplexity),
``continuations`` + ``classifier_judge`` (batched greedy continuations judged by a classifier folder), and one
loader module per task.
"""

from __future__ import annotations

from typing import Literal

from lmcore.choices import check_choice
from steering.tasks.faitheval import load_faitheval
from steering.tasks.generation import generate_answers, judge_scores, load_judge, reference_overlap_judge
from steering.tasks.metrics import choice_metrics
from steering.tasks.mmhal import load_mmhal
from steering.tasks.pairs_file import load_pairs_file
from steering.tasks.prompts import format_answer, format_prompt
from steering.tasks.scoring import score_examples
from steering.tasks.sentiment import load_sentiment
from steering.tasks.side_effects import prompt_side_effects
from steering.tasks.spa_vl import load_spa_vl
from steering.tasks.synthetic_vlm import load_synthetic_vlm
from steering.tasks.toxigen import load_toxigen
from steering.tasks.truthfulqa import load_truthfulqa
from steering.tasks.types import ContinuationExample, GenExample, MCExample

TASKS = {
    "truthfulqa": load_truthfulqa,
    "pairs_file": load_pairs_file,
    "synthetic_vlm": load_synthetic_vlm,
    "spa_vl": load_spa_vl,
    "toxigen": load_toxigen,
    "faitheval": load_faitheval,
    "mmhal": load_mmhal,
    "sentiment": load_sentiment,
}
TaskName = Literal[
    "truthfulqa", "pairs_file", "synthetic_vlm", "spa_vl", "toxigen", "faitheval", "mmhal", "sentiment"
]  # TASKS' keys
NEEDS_MODEL_PATH = ("spa_vl", "mmhal")  # image preprocessing uses the model's processor


def load_task(name: str, tokenizer, **options) -> list[MCExample | GenExample | ContinuationExample]:
    """The examples of task ``name`` (one of ``TASKS``), in a deterministic order."""
    check_choice("task", name, TaskName)
    return TASKS[name](tokenizer=tokenizer, **options)


__all__ = [
    "NEEDS_MODEL_PATH",
    "TASKS",
    "ContinuationExample",
    "GenExample",
    "MCExample",
    "choice_metrics",
    "format_answer",
    "format_prompt",
    "generate_answers",
    "judge_scores",
    "load_faitheval",
    "load_judge",
    "load_mmhal",
    "load_spa_vl",
    "reference_overlap_judge",
    "load_pairs_file",
    "load_sentiment",
    "load_synthetic_vlm",
    "load_task",
    "load_toxigen",
    "load_truthfulqa",
    "prompt_side_effects",
    "score_examples",
]
