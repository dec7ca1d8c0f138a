"""Which clean examples an adversarial generator works on: a seeded subset of one split, with source indices.

Design decisions:
- ``n`` examples are drawn with ``random.Random(f"adversarial:{seed}")`` and kept in source order, so the subset
  depends only on ``(split rows, n, seed)``. A sample, not the first ``n``: BANKING77's test file is sorted by
  intent, so its first 200 rows cover five intents only.
- Each selected example keeps its row index in the source split; generated rows carry it as ``index``.
- The fingerprint covers indices, texts and labels, and is part of every generator's cache key.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from cap_lightning.datasets import LabelledSplits, TextExample, data_fingerprint
from lmcore.choices import check_choice

SourceSplit = Literal["test", "validation", "train"]


@dataclass(frozen=True)
class Selection:
    """Selected clean examples of one split.

    Attributes:
        split: ``test`` | ``validation`` | ``train``.
        indices: row indices in that split, ascending.
        examples: the rows, aligned with ``indices``.
    """

    split: str
    indices: tuple[int, ...]
    examples: tuple[TextExample, ...]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.split}\n{','.join(map(str, self.indices))}\n".encode())
        digest.update(data_fingerprint(self.examples).encode())
        return digest.hexdigest()


def select_examples(
    splits: LabelledSplits, split: SourceSplit = "test", n: int | None = None, seed: int = 0
) -> Selection:
    """A seeded subset of ``n`` rows of ``split`` (all rows when ``n`` is None or too large).

    Raises:
        ValueError: unknown split, ``n < 1``, or an empty split.
    """
    check_choice("split", split, SourceSplit)
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    rows = getattr(splits, split)
    if not rows:
        raise ValueError(f"{splits.name} {split} split is empty: nothing to attack")
    if n is None or n >= len(rows):
        indices = list(range(len(rows)))
    else:
        indices = sorted(random.Random(f"adversarial:{seed}").sample(range(len(rows)), n))
    return Selection(split, tuple(indices), tuple(rows[i] for i in indices))
