"""The seeded stratified faithfulness subset: every class covered, exact size, deterministic per seed."""

from collections import Counter

import pytest

from cap_lightning.stratified import stratified_rows

# a label-sorted split, as the Banking77 test file is: 7 classes of unequal sizes
SORTED_LABELS = [c for c in range(7) for _ in range(3 + 2 * c)]


@pytest.mark.parametrize("n", [7, 8, 20, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_subset_covers_every_class_and_has_the_exact_size(n, seed):
    rows = stratified_rows(SORTED_LABELS, n, seed)
    assert len(rows) == len(set(rows)) == n
    assert rows == sorted(rows) and all(0 <= i < len(SORTED_LABELS) for i in rows)
    counts = Counter(SORTED_LABELS[i] for i in rows)
    assert set(counts) == set(SORTED_LABELS)  # every class
    small = min(Counter(SORTED_LABELS).values())
    if n <= 7 * small:  # no class has run out: sizes differ by at most one
        assert max(counts.values()) - min(counts.values()) <= 1


def test_the_first_rows_of_a_sorted_split_would_not_cover_every_class():
    first = SORTED_LABELS[:8]  # what a batch limit keeps
    assert len(set(first)) < 7 and len({SORTED_LABELS[i] for i in stratified_rows(SORTED_LABELS, 8)}) == 7


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert stratified_rows(SORTED_LABELS, 10, 3) == stratified_rows(SORTED_LABELS, 10, 3)
    assert len({tuple(stratified_rows(SORTED_LABELS, 10, s)) for s in range(5)}) > 1


def test_fewer_rows_than_classes_take_distinct_classes():
    rows = stratified_rows(SORTED_LABELS, 4, 0)
    assert len({SORTED_LABELS[i] for i in rows}) == 4


def test_none_or_more_than_the_split_keeps_every_row():
    assert stratified_rows(SORTED_LABELS, None) == list(range(len(SORTED_LABELS)))
    assert stratified_rows(SORTED_LABELS, 10_000) == list(range(len(SORTED_LABELS)))


def test_a_class_that_runs_out_is_skipped_and_the_size_stays_exact():
    labels = [0] * 20 + [1]
    rows = stratified_rows(labels, 10, 0)
    assert len(rows) == 10 and 20 in rows


@pytest.mark.parametrize("n", [0, -3])
def test_bad_sizes_are_clear_errors(n):
    with pytest.raises(ValueError, match=f"n must be >= 1 or None, got {n}"):
        stratified_rows(SORTED_LABELS, n)
