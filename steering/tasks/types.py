"""The example types every task returns: ``MCExample`` (likelihood tasks) and ``GenExample`` (generation tasks).

Design decisions:
- One multiple-choice type serves every likelihood task (TruthfulQA MC1/MC2/binary, ToxiGen, FaithEval, SPA-VL
  preference): unique answer strings are scored once each, and each metric names its true/false index sets, so MC1,
  MC2 and binary of one question cost one scoring pass.
- An example also names its steering pair (preferred, dispreferred answer), so the steering split is built from the
  same rows with the same formatting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from lmcore.choices import check_choice
from steering.pairs import ContrastivePair


@dataclass(frozen=True)
class MCExample:
    """One question with answer choices.

    Attributes:
        prompt: formatted model input (chat template applied when asked).
        choices: unique answer strings (each scored once).
        targets: metric name → (true indices, false indices) into ``choices``.
        pair: (preferred, dispreferred) indices into ``choices`` used when the example is in the steering split.
        pixel_values: image tensor (1, 3, H, W) for a VLM, or None.
        meta: free-form record (source row, category) kept for reports.
        image_kwargs: extra VLM inputs, e.g. ``{"image_sizes": ...}`` for LLaVA-NeXT.
    """

    prompt: str
    choices: tuple[str, ...]
    targets: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    pair: tuple[int, int]
    pixel_values: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    image_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n < 2:
            raise ValueError(f"an MC example needs at least 2 choices, got {n}: {self.prompt[:60]!r}")
        for name, (true, false) in self.targets.items():
            if not true or not false:
                raise ValueError(f"target {name!r} needs at least one true and one false choice")
            if any(not 0 <= i < n for i in (*true, *false)):
                raise ValueError(f"target {name!r} indexes outside the {n} choices")
        if not all(0 <= i < n for i in self.pair) or self.pair[0] == self.pair[1]:
            raise ValueError(f"pair {self.pair} must be two different indices into the {n} choices")

    def restricted(self, target: str) -> MCExample:
        """The same question with only the choices of ``target`` (e.g. ``binary``: 2 choices), for cheap sweeps."""
        check_choice("target", target, Literal[tuple(sorted(self.targets))])
        true, false = self.targets[target]
        keep = list(dict.fromkeys((*true, *false, *self.pair)))
        new = {i: j for j, i in enumerate(keep)}
        targets = {target: (tuple(new[i] for i in true), tuple(new[i] for i in false))}
        pair = (new[self.pair[0]], new[self.pair[1]])
        choices = tuple(self.choices[i] for i in keep)
        return MCExample(self.prompt, choices, targets, pair, self.pixel_values, self.meta, self.image_kwargs)

    def to_pair(self) -> ContrastivePair:
        good, bad = self.choices[self.pair[0]], self.choices[self.pair[1]]
        return ContrastivePair(self.prompt, good, bad, self.pixel_values, self.image_kwargs)

    def with_pairs(self, limit: int, seed: int = 0) -> list[MCExample]:
        """This question once per steering pair: its own ``pair`` first, then other (true, false) combinations of
        every target (e.g. TruthfulQA's MC2 lists), in a seeded order, up to ``limit`` in all.

        Raises:
            ValueError: ``limit`` < 1.
        """
        if limit < 1:
            raise ValueError(f"limit {limit} must be >= 1 (pairs per question)")
        combos = dict.fromkeys((t, f) for true, false in self.targets.values() for t in true for f in false)
        combos.pop(self.pair, None)
        rest = list(combos)
        random.Random(seed).shuffle(rest)
        return [replace(self, pair=p) for p in [self.pair, *rest][:limit]]


@dataclass(frozen=True)
class GenExample:
    """One open-ended question; ``reference`` is the ground-truth answer the judge may use, ``contrast`` an answer to
    steer away from when the example is in a steering split."""

    prompt: str
    reference: str
    pixel_values: torch.Tensor | None = None
    image_kwargs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    contrast: str | None = None

    def to_pair(self) -> ContrastivePair:
        if not self.contrast:
            raise ValueError(f"generation example {self.meta} has no contrast answer, so it cannot be a steering pair")
        return ContrastivePair(self.prompt, " " + self.reference.strip(), " " + self.contrast.strip(),
                               self.pixel_values, self.image_kwargs)  # fmt: skip


@dataclass(frozen=True)
class ContinuationExample:
    """One prompt to continue (sentiment steering), judged by a classifier, with its own steering triple.

    ``prompt`` is what the model continues at evaluation time; ``pair_prompt`` with ``preferred`` / ``dispreferred``
    (y⁺ / y⁻, each starting with its separator) is the triple the example contributes when it falls in the steering
    split. The two come from disjoint data (e.g. a held-out review opening vs training sentences), so the steering
    set never holds an evaluation prompt.
    """

    prompt: str
    pair_prompt: str
    preferred: str
    dispreferred: str
    meta: dict = field(default_factory=dict)
    pixel_values: torch.Tensor | None = None  # text only; present so callers can test every example type alike
    image_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("prompt", "pair_prompt", "preferred", "dispreferred"):
            if not getattr(self, name).strip():
                raise ValueError(f"continuation example {self.meta}: {name} is empty")
        if self.preferred == self.dispreferred:
            raise ValueError(f"continuation example {self.meta}: preferred and dispreferred are the same text")

    def to_pair(self) -> ContrastivePair:
        return ContrastivePair(self.pair_prompt, self.preferred, self.dispreferred)
