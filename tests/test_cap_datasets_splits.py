"""Invariants of the pure split helpers in cap_lightning.datasets.splits (no Lightning, no data folder needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cap_lightning.datasets import TextExample, carve_validation, data_fingerprint, few_shot

SPLITS_PY = Path(__file__).resolve().parents[1] / "cap_lightning" / "datasets" / "splits.py"


def make_pool(sizes: dict[int, int]) -> list[TextExample]:
    """Interleaved rows with unique texts: ``sizes[label]`` rows per label."""
    rows = [TextExample(f"class {label} example {i}", label) for label, n in sizes.items() for i in range(n)]
    return sorted(rows, key=lambda ex: (int(ex.text.rsplit(" ", 1)[1]), ex.label))


POOL = make_pool({0: 30, 1: 12, 2: 7, 3: 50})


# ---------------------------------------------------------------------------------------------------- few_shot


@pytest.mark.parametrize("k", [1, 5, 7])
def test_few_shot_exactly_k_per_class_and_subset(k: int) -> None:
    shots = few_shot(POOL, k, seed=0)
    assert Counter(ex.label for ex in shots) == {0: k, 1: k, 2: k, 3: k}
    assert set(shots) <= set(POOL)
    assert len(set(shots)) == len(shots)


def test_few_shot_deterministic_and_seed_dependent() -> None:
    assert few_shot(POOL, 5, seed=3) == few_shot(list(POOL), 5, seed=3)
    assert few_shot(POOL, 5, seed=3) != few_shot(POOL, 5, seed=4)


def test_few_shot_keeps_input_order_and_is_nested_across_k() -> None:
    shots = few_shot(POOL, 5, seed=1)
    positions = [POOL.index(ex) for ex in shots]
    assert positions == sorted(positions)
    assert set(few_shot(POOL, 3, seed=1)) <= set(shots) <= set(few_shot(POOL, 7, seed=1))


def test_few_shot_k_larger_than_smallest_class_names_k_class_and_size() -> None:
    with pytest.raises(ValueError, match=r"shots_per_class=8 .*smallest class.*label 2 .*only 7 examples"):
        few_shot(POOL, 8, seed=0)
    with pytest.raises(ValueError, match=r"label 2 \('c'\) has only 7"):
        few_shot(POOL, 8, seed=0, label_names=["a", "b", "c", "d"])


@pytest.mark.parametrize("k", [0, -3])
def test_few_shot_rejects_k_below_one(k: int) -> None:
    with pytest.raises(ValueError, match=rf"shots_per_class must be an integer >= 1, got {k}"):
        few_shot(POOL, k, seed=0)


def test_few_shot_rejects_empty_pool() -> None:
    with pytest.raises(ValueError, match="empty"):
        few_shot([], 1, seed=0)


# ---------------------------------------------------------------------------------------------------- carve_validation


def test_carve_validation_partitions_and_stratifies() -> None:
    train, val = carve_validation(POOL, 0.2, seed=0)
    assert not set(train) & set(val)
    assert Counter(train) + Counter(val) == Counter(POOL)
    assert Counter(ex.label for ex in val) == {0: 6, 1: 2, 2: 1, 3: 10}  # round-half-up share of 30/12/7/50
    for part in (train, val):
        positions = [POOL.index(ex) for ex in part]
        assert positions == sorted(positions)


def test_carve_validation_deterministic_and_seed_dependent() -> None:
    assert carve_validation(POOL, 0.2, seed=5) == carve_validation(list(POOL), 0.2, seed=5)
    assert carve_validation(POOL, 0.2, seed=5)[1] != carve_validation(POOL, 0.2, seed=6)[1]


def test_carve_validation_keeps_every_class_in_train() -> None:
    pool = make_pool({0: 1, 1: 2, 2: 3, 3: 40})
    train, val = carve_validation(pool, 0.9, seed=0)
    assert Counter(ex.label for ex in train) == {0: 1, 1: 1, 2: 1, 3: 4}
    assert Counter(ex.label for ex in val) == {1: 1, 2: 2, 3: 36}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_carve_validation_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=rf"strictly between 0 and 1, got {fraction}"):
        carve_validation(POOL, fraction, seed=0)


# ---------------------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_sha256_hex_and_content_sensitive() -> None:
    rows = [TextExample("a b", 0), TextExample("c", 1)]
    fp = data_fingerprint(rows)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert data_fingerprint(list(rows)) == fp
    assert data_fingerprint([TextExample("a b", 1), rows[1]]) != fp  # label changed
    assert data_fingerprint([TextExample("a c", 0), rows[1]]) != fp  # text changed
    assert data_fingerprint(rows[::-1]) != fp  # order matters
    assert data_fingerprint([TextExample("a", 0), TextExample("b", 1)]) != data_fingerprint(
        [TextExample("a\t1", 0), TextExample("b", 1)]
    )


def test_fingerprint_stable_across_processes() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('splits_copy', {str(SPLITS_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['splits_copy'] = m; spec.loader.exec_module(m)\n"
        "print(m.data_fingerprint([m.TextExample('héllo', 0), m.TextExample('world', 3)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == data_fingerprint([TextExample("héllo", 0), TextExample("world", 3)])


def test_carve_validation_keeps_duplicate_texts_on_one_side() -> None:
    pool = POOL + [TextExample(ex.text, ex.label) for ex in POOL if ex.label == 0]  # every class-0 text twice
    for seed in range(5):
        train, val = carve_validation(pool, 0.3, seed=seed)
        assert not {ex.text for ex in train} & {ex.text for ex in val}
        assert Counter(train) + Counter(val) == Counter(pool)
        assert Counter(ex.label for ex in val)[0] == 18  # 60 rows * 0.3, moved in pairs
