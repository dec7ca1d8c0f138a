"""A seeded stratified subset of evaluation rows that covers every class (docs/cap.md §3.4, "Faithfulness rows").

Faithfulness is costly (an IG rationale plus one forward per bin), so ``CapModule(faithfulness_rows=n)`` scores a
subset of the test split. The first rows of an unshuffled, label-sorted test file cover a few classes only; this
subset is drawn round-robin over the classes instead.

Design decisions:
- Rows of each class are shuffled with ``random.Random(seed)``; the class order is shuffled too, then rows are taken
  one per class in turn (a class that runs out is skipped) until ``n`` rows are taken. Every class present gets a
  row when ``n`` ≥ the number of classes, and class sizes differ by at most one wherever the classes are large
  enough.
- The result is the sorted row indices (the order of the split), so it is independent of batch order.
- ``n=None`` or ``n`` ≥ the number of rows: every row.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence


def stratified_rows(labels: Sequence[int], n: int | None, seed: int = 0) -> list[int]:
    """Sorted indices of ``n`` rows of ``labels``, round-robin over the classes in a seeded order.

    Args:
        labels: the class of each row.
        n: rows to keep (>= 1); None keeps all.
        seed: seeds the shuffles of the class order and of the rows within each class.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[int(label)].append(i)
    classes = sorted(by_class)
    rng.shuffle(classes)
    queues = []
    for c in classes:
        rows = by_class[c]
        rng.shuffle(rows)
        queues.append(rows)
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for rows in queues:
            if depth < len(rows):
                picked.append(rows[depth])
                if len(picked) == n:
                    break
        depth += 1
    return sorted(picked)
