"""Exact-duplicate texts across splits: counted, warned about, optionally dropped from train and validation.

Design decisions:
- A duplicate is the same (stripped) text in train or validation as in test, whatever its label: a model that has
  seen a test text in training is not tested on it.
- Only custom data is checked (``CustomData.drop_duplicates``): the built-in datasets are kept as published.
- Dropping removes rows from train and validation, never from test, so the test set stays the one given.
"""

from __future__ import annotations

from dataclasses import replace

from cap_lightning.datasets.splits import LabelledSplits


def overlap_with_test(splits: LabelledSplits) -> dict[str, int]:
    """Number of train and validation rows whose text is also a test text."""
    test = {e.text for e in splits.test}
    return {name: sum(e.text in test for e in getattr(splits, name)) for name in ("train", "validation")}


def overlap_message(name: str, counts: dict[str, int]) -> str | None:
    """A warning for :func:`overlap_with_test`'s ``counts`` of dataset ``name``; None when there is no overlap."""
    if not any(counts.values()):
        return None
    total = sum(counts.values())
    return (
        f"{name}: {counts['train']} train and {counts['validation']} validation "
        f"{'text' if total == 1 else 'texts'} also in test (exact duplicates); test accuracy is inflated by them. "
        "Set drop_duplicates: true in the custom data options to drop them from train and validation"
    )


def drop_test_duplicates(splits: LabelledSplits) -> LabelledSplits:
    """``splits`` without the train and validation rows whose text is a test text."""
    test = {e.text for e in splits.test}
    train = [e for e in splits.train if e.text not in test]
    if not train:
        raise ValueError(f"{splits.name}: every train text is also in test; nothing is left to train on")
    return replace(splits, train=train, validation=[e for e in splits.validation if e.text not in test])
