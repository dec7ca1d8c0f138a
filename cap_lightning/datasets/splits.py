"""Labelled rows and pure, deterministic split helpers: validation carving, few-shot sampling, fingerprints.

Nothing here imports Lightning, torch or a tokenizer; every function works on plain :class:`TextExample` lists so it
can be reused by data modules, callbacks and scripts alike.

Design decisions:

- **Per-class string-seeded RNGs.** Both :func:`carve_validation` and :func:`few_shot` shuffle each class with its own
  ``random.Random(f"<purpose>:{seed}:{label}")``. String seeds are hashed with SHA-512 by :mod:`random`, so the result
  is independent of ``PYTHONHASHSEED``, of the process and of the other classes present. A consequence worth relying
  on: few-shot subsets are *nested* (the 5-shot subset of a seed is contained in its 10-shot subset).
- **Input order is kept.** Selected rows are returned in their original order, so the output depends only on
  ``(rows, seed)`` and never on set/dict iteration order.
- **Duplicates stay together.** :func:`carve_validation` moves rows with the same text and label as one unit, so a
  text repeated in train (BANKING77 train has 4 such texts) never ends up on both sides. The same text under two
  different labels is two units and may still be split.
- **Fingerprints are content hashes** (texts and labels, in order), so caches keyed by them survive restarts and are
  shared between processes and ranks.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LabelledSplits", "TextExample", "carve_validation", "data_fingerprint", "few_shot"]


@dataclass(frozen=True)
class TextExample:
    """One labelled text.

    Attributes:
        text: The (stripped) input text.
        label: Integer label id, an index into the owning dataset's ``label_names``.
    """

    text: str
    label: int


@dataclass(repr=False)
class LabelledSplits:
    """Train / validation / test rows of one dataset plus its label names.

    Attributes:
        name: Dataset name (one of ``DATASETS``, or ``"custom"``).
        label_names: Label names; the index is the label id used in every :class:`TextExample`.
        train: Training rows.
        validation: Validation rows (carved from train where the dataset has none).
        test: Test rows.
    """

    name: str
    label_names: list[str]
    train: list[TextExample]
    validation: list[TextExample]
    test: list[TextExample]

    def __post_init__(self) -> None:
        for split, rows in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            bad = next((ex.label for ex in rows if not 0 <= ex.label < len(self.label_names)), None)
            if bad is not None:
                raise ValueError(f"{self.name} {split}: label id {bad} outside 0..{len(self.label_names) - 1}")

    @property
    def num_labels(self) -> int:
        """Number of classes (``len(label_names)``)."""
        return len(self.label_names)

    def __repr__(self) -> str:
        return (
            f"LabelledSplits(name={self.name!r}, num_labels={self.num_labels}, train={len(self.train)}, "
            f"validation={len(self.validation)}, test={len(self.test)})"
        )


def _indices_by_label(examples: Sequence[TextExample]) -> dict[int, list[int]]:
    """Row indices of ``examples`` grouped by label, each list in input order."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        groups[example.label].append(i)
    return dict(groups)


def _shuffled(indices: list[int], purpose: str, seed: int, label: int) -> list[int]:
    """A copy of ``indices`` shuffled by an RNG private to ``(purpose, seed, label)``."""
    out = list(indices)
    random.Random(f"{purpose}:{seed}:{label}").shuffle(out)
    return out


def _n_validation(n_class: int, fraction: float) -> int:
    """Validation rows for a class of ``n_class`` rows: round-half-up share, but at least one row stays in train."""
    if n_class < 2:
        return 0
    return min(int(n_class * fraction + 0.5), n_class - 1)


def _carve_class(train: Sequence[TextExample], indices: list[int], n_val: int, seed: int, label: int) -> list[int]:
    """Up to ``n_val`` row indices of one class for validation; rows sharing a text are moved together."""
    units: dict[str, list[int]] = {}
    for i in indices:
        units.setdefault(train[i].text, []).append(i)
    order = list(units.values())
    random.Random(f"carve:{seed}:{label}").shuffle(order)
    chosen: list[int] = []
    for unit in order:
        if len(chosen) + len(unit) <= n_val:
            chosen.extend(unit)
    return chosen


def carve_validation(
    train: list[TextExample], fraction: float, seed: int
) -> tuple[list[TextExample], list[TextExample]]:
    """Split ``train`` into a smaller train and a validation set, stratified by label.

    Each class contributes ``round(fraction * class_size)`` rows (half rounded up) to validation, except that a class
    with at least two rows always keeps one in train and a singleton class stays in train entirely. Rows with the same
    text and label move together (so a class with duplicates may contribute slightly fewer rows).

    Args:
        train: Rows to split.
        fraction: Share of each class moved to validation, strictly between 0 and 1.
        seed: RNG seed; the same ``(train, fraction, seed)`` always gives the same split.

    Returns:
        ``(new_train, validation)``: a partition of the input rows, each in original input order.

    Raises:
        ValueError: If ``fraction`` is not in (0, 1) or ``train`` is empty.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be strictly between 0 and 1, got {fraction!r}")
    if not train:
        raise ValueError("cannot carve a validation set out of an empty train split")
    chosen: set[int] = set()
    for label, indices in sorted(_indices_by_label(train).items()):
        chosen.update(_carve_class(train, indices, _n_validation(len(indices), fraction), seed, label))
    new_train = [ex for i, ex in enumerate(train) if i not in chosen]
    validation = [ex for i, ex in enumerate(train) if i in chosen]
    return new_train, validation


def _class_name(label: int, label_names: Sequence[str] | None) -> str:
    """``"3 ('card_arrival')"`` when a name is known, else ``"3"``."""
    if label_names is not None and 0 <= label < len(label_names):
        return f"{label} ({label_names[label]!r})"
    return str(label)


def few_shot(
    examples: list[TextExample],
    shots_per_class: int,
    seed: int,
    *,
    label_names: Sequence[str] | None = None,
) -> list[TextExample]:
    """Draw exactly ``shots_per_class`` rows of every label present in ``examples``.

    Subsets are nested across ``k`` for a fixed seed (the 5-shot rows are among the 10-shot rows), and rows come back
    in their original input order.

    Args:
        examples: Pool to sample from (normally the train split).
        shots_per_class: ``k``, the number of rows per class; at least 1.
        seed: RNG seed; the same ``(examples, k, seed)`` always gives the same rows.
        label_names: Optional names, only used to make error messages readable.

    Returns:
        ``k * num_classes`` rows, a subset of ``examples``.

    Raises:
        ValueError: If ``k < 1``, ``examples`` is empty, or the smallest class has fewer than ``k`` rows (the message
            names ``k``, that class and its size).
    """
    if isinstance(shots_per_class, bool) or not isinstance(shots_per_class, int) or shots_per_class < 1:
        raise ValueError(f"shots_per_class must be an integer >= 1, got {shots_per_class!r}")
    groups = _indices_by_label(examples)
    if not groups:
        raise ValueError("cannot draw a few-shot subset from an empty split")
    smallest = min(sorted(groups), key=lambda label: len(groups[label]))
    if len(groups[smallest]) < shots_per_class:
        raise ValueError(
            f"shots_per_class={shots_per_class} is larger than the smallest class: label "
            f"{_class_name(smallest, label_names)} has only {len(groups[smallest])} examples"
        )
    chosen: set[int] = set()
    for label, indices in groups.items():
        chosen.update(_shuffled(indices, "few_shot", seed, label)[:shots_per_class])
    return [ex for i, ex in enumerate(examples) if i in chosen]


def data_fingerprint(examples: Sequence[TextExample]) -> str:
    """SHA-256 hex digest over the texts and labels of ``examples``, in order.

    Each row is hashed as ``label, len(text), text`` so that no two different sequences can collide by re-splitting a
    text across rows. The digest is stable across runs, processes and machines.

    Args:
        examples: Rows to fingerprint.

    Returns:
        A 64-character lowercase hex string.
    """
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.label}\t{len(example.text)}\t{example.text}\n".encode())
    return digest.hexdigest()
