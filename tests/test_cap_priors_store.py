import json

import pytest
import torch

from cap_lightning.priors.hybrid import HybridPrior
from cap_lightning.priors.store import ExampleStore, example_key, lookup_or_compute, valid_record
from tests.helpers import CountingPrior

TEXTS = ["a b c", "d", "", "e f"]
LABELS = [0, 1, 0, 1]


def _records(texts):
    return [{"prior": [round((i + 1) / len(t.split()), 6) for i in range(len(t.split()))]} for t in texts]


def _loop(store, memory=None, texts=TEXTS):
    calls = []

    def compute(todo):
        calls.append(list(todo))
        return _records([texts[i] for i in todo])

    keys = [example_key("ns", t, y) for t, y in zip(texts, LABELS)]
    return lookup_or_compute(keys, texts, compute, store, memory), calls


def test_a_store_hit_equals_the_recompute_and_skips_it(tmp_path):
    store = ExampleStore(tmp_path / "examples")
    first, calls = _loop(store)
    assert calls == [[0, 1, 2, 3]] and first == _records(TEXTS)
    again, calls = _loop(ExampleStore(tmp_path / "examples"))  # a new run reads what the first one saved
    assert calls == [] and again == first
    fresh, calls = _loop(None)  # no store: everything is computed
    assert calls == [[0, 1, 2, 3]] and fresh == first
    memory = {}
    _loop(None, memory)
    in_memory, calls = _loop(None, memory)  # records kept in memory are not recomputed
    assert calls == [] and in_memory == first


def test_only_missing_or_invalid_records_are_recomputed(tmp_path):
    store = ExampleStore(tmp_path)
    store.save({example_key("ns", TEXTS[0], LABELS[0]): _records(TEXTS[:1])[0]})
    store.save({example_key("ns", TEXTS[1], LABELS[1]): {"prior": [2.0]}})  # out of [0, 1]: never used
    (tmp_path / "part-broken.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        out, calls = _loop(store)
    assert calls == [[1, 2, 3]] and out == _records(TEXTS)
    assert not valid_record({"prior": [0.5]}, "two words") and valid_record({"prior": []}, "")
    parts = [json.loads(p.read_text()) for p in tmp_path.glob("part-*.json") if p.name != "part-broken.json"]
    assert all(isinstance(p, dict) for p in parts) and not list(tmp_path.glob(".*tmp"))  # atomic parts


def test_hybrid_source_scores_come_from_the_store_on_the_next_run(tmp_path):
    texts, labels = ["w x y", "z", "u v"], [0, 1, 0]

    def run(folder):
        source = CountingPrior()
        hybrid = HybridPrior([source], example_cache_dir=folder)
        hybrid.prepare(texts, labels, 2, torch.device("cpu"), label_names=["n", "p"])
        return hybrid(texts, labels), source.calls

    first, calls = run(str(tmp_path))
    assert calls == len(texts)
    second, calls = run(str(tmp_path))
    assert calls == 0  # every source score read back
    direct, _ = run(None)
    for a, b, c in zip(first, second, direct):
        assert torch.equal(a, b) and torch.equal(a, c)  # cache hit == recompute
