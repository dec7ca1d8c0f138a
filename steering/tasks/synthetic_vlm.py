"""A synthetic image preference task for the tiny random LLaVA built in code (``make steer-llava``).

Design decision: SPA-VL, MMHal-Bench images and LLaVA-1.6 weights are not available offline, so the LLaVA pipeline
is exercised end to end on seeded random images with (chosen, rejected) answers drawn from a small word list. The
numbers it produces measure nothing about LLaVA; they prove the wiring (merged image embeddings in attribution,
deltas, steering and chosen-vs-rejected scoring). The prompt repeats the image token ``image_tokens`` times, the
count the tiny LLaVA's vision tower produces.
"""

from __future__ import annotations

import random

import torch

from steering.tasks.prompts import format_answer
from steering.tasks.types import MCExample

_QUESTIONS = ("what is the sky", "is the water wet", "can dogs swim", "is the sun hot", "is the earth flat")
_GOOD = ("blue", "yes", "yes it is", "true", "no")
_BAD = ("green", "no", "no never", "false", "yes")


def load_synthetic_vlm(
    tokenizer=None, n: int = 40, image_size: int = 16, image_tokens: int = 4, image_token: str = "<image>",
    seed: int = 0,
) -> list[MCExample]:  # fmt: skip
    """``n`` preference examples (target ``preference``: chosen vs rejected), each with a seeded random image."""
    if n < 1:
        raise ValueError(f"n {n} must be >= 1")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        q = rng.randrange(len(_QUESTIONS))
        prompt = f"{' '.join([image_token] * image_tokens)} q {_QUESTIONS[q]} a"
        image = torch.randn(1, 3, image_size, image_size, generator=gen)
        choices = (format_answer(_GOOD[q], False), format_answer(_BAD[q], False))
        out.append(
            MCExample(prompt, choices, {"preference": ((0,), (1,))}, (0, 1), image, {"row": i, "synthetic": True})
        )
    return out
