"""Two processes sharing one cache folder: both finish, agree, and leave no chunk behind.

Each worker runs ``PriorCacheCallback.setup`` (or the per-example store, or the adversarial chunk loop) against
the same folder with a slow prior, the second one starting while the first is mid-way, as two runs launched
together would.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path
from types import SimpleNamespace

import torch

TEXTS = [f"text number {i} is {'good' if i % 2 else 'bad'}" for i in range(12)]
LABELS = [i % 2 for i in range(12)]


def _slow_prior(delay: float):
    """A prior that sleeps ``delay`` s per chunk and counts the rows it computed (built in the worker)."""
    from cap_lightning.priors.base import AttributionPrior

    class SlowPrior(AttributionPrior):
        calls = 0

        def config(self) -> dict:
            return {"slow": 1}

        def __call__(self, texts, labels):
            time.sleep(delay)
            SlowPrior.calls += len(texts)
            return [torch.arange(1, len(t.split()) + 1, dtype=torch.float32) / len(t.split()) for t in texts]

    return SlowPrior()


class _Strategy:
    root_device = torch.device("cpu")

    def barrier(self, name=None) -> None:
        pass

    def broadcast(self, obj, src=0):
        return obj


class _Data:
    label_names = ["neg", "pos"]
    num_labels = 2
    setting = "full"
    teacher_prompt = None
    priors = None

    def prior_inputs(self):
        return TEXTS, LABELS, "fingerprint-of-the-test-data"

    def attach_priors(self, priors) -> None:
        self.priors = priors


def _prior_worker(cache: str, out: str, start_after: float) -> None:
    from cap_lightning.priors.callback import PriorCacheCallback

    time.sleep(start_after)
    prior = _slow_prior(0.25)
    callback = PriorCacheCallback(prior=prior, cache_dir=cache, chunk_size=3)
    data = _Data()
    trainer = SimpleNamespace(
        datamodule=data, is_global_zero=True, global_rank=0, world_size=1, strategy=_Strategy(), logger=None
    )
    callback.setup(trainer, None, "fit")
    result = {"priors": [p.tolist() for p in data.priors], "hit": callback.last["cache_hit"], "calls": prior.calls}
    Path(out).write_text(json.dumps(result))


def _run_two(target, tmp_path: Path, *args) -> list[dict]:
    ctx = mp.get_context("spawn")
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [ctx.Process(target=target, args=(*args, str(out), delay)) for out, delay in zip(outs, (0.0, 0.6))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0], "a worker crashed (see its stderr above)"
    return [json.loads(out.read_text()) for out in outs]


def test_two_runs_computing_one_prior_into_one_folder(tmp_path):
    cache = tmp_path / "cache"
    a, b = _run_two(_prior_worker, tmp_path, str(cache))
    assert a["priors"] == b["priors"]
    assert sorted([a["hit"], b["hit"]]) == [False, True]  # the second waited, then read the first's result
    assert a["calls"] + b["calls"] == len(TEXTS)  # no row computed twice
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    assert sorted(p.name for p in entry.iterdir()) == ["priors.safetensors"]  # no chunk, no temporary file


def _store_worker(folder: str, out: str, start_after: float) -> None:
    from cap_lightning.priors.store import ExampleStore, lookup_or_compute

    time.sleep(start_after)
    calls = []

    def compute(indices):
        time.sleep(1.0)
        calls.extend(indices)
        return [{"prior": [0.5] * len(TEXTS[i].split())} for i in indices]

    keys = [f"key-{i}" for i in range(len(TEXTS))]
    records = lookup_or_compute(keys, TEXTS, compute, ExampleStore(folder))
    Path(out).write_text(json.dumps({"records": records, "calls": len(calls)}))


def test_two_runs_sharing_one_example_store(tmp_path):
    a, b = _run_two(_store_worker, tmp_path, str(tmp_path / "store"))
    assert a["records"] == b["records"]
    assert a["calls"] + b["calls"] == len(TEXTS)  # the second waited for the first's part, then read it
    files = [p.name for p in (tmp_path / "store").iterdir() if not p.name.endswith(".lock")]
    assert files and all(name.startswith("part-") and name.endswith(".json") for name in files)


def _chunks_worker(folder: str, out: str, start_after: float) -> None:
    from cap_lightning.adversarial.chunks import ChunkStore, run_chunks
    from cap_lightning.adversarial.format import AdversarialExample

    time.sleep(start_after)
    calls = []

    def process(positions):
        time.sleep(0.25)
        calls.extend(positions)
        return [AdversarialExample(f"{TEXTS[p]} x", LABELS[p], TEXTS[p], "test", index=p) for p in positions]

    store = ChunkStore(folder, {"what": "test"}, len(TEXTS), 3)
    rows, _ = run_chunks(store, lambda p: p, process, desc="test", progress=False)
    Path(out).write_text(json.dumps({"rows": [r.text for r in rows], "calls": len(calls)}))


def test_two_runs_sharing_one_adversarial_entry(tmp_path):
    a, b = _run_two(_chunks_worker, tmp_path, str(tmp_path / "adv"))
    assert a["rows"] == b["rows"]
    assert a["calls"] + b["calls"] == len(TEXTS)
