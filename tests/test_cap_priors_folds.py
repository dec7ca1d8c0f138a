"""The cross-fitting folds (``cap_lightning.priors.folds``): a stratified partition of the distinct training texts,
deterministic for a seed and independent of the texts' order."""

import random
from collections import Counter

import pytest

from cap_lightning.priors.folds import assign_folds, fold_rows


def _split(n_per_label: dict[int, int], seed: int = 0) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for label, n in n_per_label.items():
        texts += [f"text {i} of class {label}" for i in range(n)]
        labels += [label] * n
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


@pytest.mark.parametrize("sizes", [{0: 10, 1: 10}, {0: 7, 1: 3, 2: 11}, {0: 1, 1: 2, 3: 9}, {5: 4}])
@pytest.mark.parametrize("folds", [2, 3, 4])
def test_folds_partition_the_texts_with_balanced_strata(sizes, folds):
    texts, labels = _split(sizes)
    for seed in range(3):
        fold_of = assign_folds(texts, labels, folds, seed)
        assert set(fold_of) == set(texts) and set(fold_of.values()) == set(range(folds))  # covers, none empty
        for fold in range(folds):  # the rows a reference trains on and those it scores split the data
            train = set(fold_rows(fold_of, texts, fold))
            scored = {i for i, t in enumerate(texts) if fold_of[t] == fold}
            assert train.isdisjoint(scored) and train | scored == set(range(len(texts)))
        totals = Counter(fold_of.values())
        assert max(totals.values()) - min(totals[f] for f in range(folds)) <= 1
        for label in sizes:
            per_fold = Counter(fold_of[t] for t, y in zip(texts, labels) if y == label)
            assert max(per_fold.values()) - min(per_fold[f] for f in range(folds)) <= 1, (label, per_fold)


def test_folds_follow_the_seed_not_the_order_of_the_texts():
    texts, labels = _split({0: 12, 1: 9})
    first = assign_folds(texts, labels, 3, seed=0)
    assert assign_folds(texts[::-1], labels[::-1], 3, seed=0) == first
    assert assign_folds(texts, labels, 3, seed=0) == first
    assert any(assign_folds(texts, labels, 3, seed=s) != first for s in (1, 2))


def test_copies_of_a_text_share_a_fold_whatever_their_labels():
    texts = ["same words", "other", "same words", "third", "fourth", "same words"]
    labels = [1, 0, 0, 1, 0, 1]
    for seed in range(5):
        fold_of = assign_folds(texts, labels, 2, seed)
        assert len(fold_of) == 4  # one entry per distinct text
        train = [texts[i] for i in fold_rows(fold_of, texts, fold_of["same words"])]
        assert "same words" not in train  # its reference sees no copy of it


@pytest.mark.parametrize(
    ("folds", "error", "match"),
    [
        (1, ValueError, r"cross_fit_folds=1 leaves the reference no text to fine-tune on.*use null"),
        (0, ValueError, r"cross_fit_folds must be >= 2 .* or null .*got 0"),
        (-3, ValueError, r"got -3"),
        (True, TypeError, r"cross_fit_folds must be an integer >= 2 or null, got True"),
        (2.0, TypeError, r"got 2\.0"),
        (5, ValueError, r"cross_fit_folds=5 needs at least 5 distinct training texts .*got 4"),
    ],
)
def test_bad_fold_counts_name_the_value(folds, error, match):
    with pytest.raises(error, match=match):
        assign_folds(["a", "b", "c", "d", "a"], [0, 1, 0, 1, 0], folds)


def test_texts_and_labels_must_match():
    with pytest.raises(ValueError, match="got 3 texts and 2 labels"):
        assign_folds(["a", "b", "c"], [0, 1], 2)
