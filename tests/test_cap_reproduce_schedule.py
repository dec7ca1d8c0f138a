"""The reproduction's scheduler: runs are released when their inputs exist, and workers take runs of any dataset."""

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cap_lightning.reproduce import _Inline, schedule
from cap_lightning.reproduce_plan import DatasetPlan, Run, final_runs, selection_runs

METHODS = ["baseline", "ig", "cap", "hybrid_mean", "uniform", "shuffled"]
VAL = {0.1: 0.5, 0.3: 0.7, 1.0: 0.6}  # validation accuracy by λ: 0.3 wins


def _plan(dataset="hwu64"):
    return DatasetPlan(dataset, METHODS, [0.1, 0.3, 1.0], tune_seed=0, seeds=[1, 2, 3], few_seeds=2)


def test_runs_are_released_when_their_inputs_exist():
    plan = _plan()
    first = plan.released()
    assert first == [Run("hwu64", "baseline", s, 0.0, st) for s, st in ((0, "select"), (1, "final"), (2, "final"),
                                                                       (3, "final"))]  # fmt: skip
    assert plan.released() == []  # handed out once
    plan.finish(first[1], None)  # a reported baseline: nothing new (the grid waits for the tuning baseline)
    assert plan.released() == []
    plan.finish(first[0], 0.8)
    grid = plan.released()
    assert grid == selection_runs("hwu64", METHODS, [0.1, 0.3, 1.0], 0)[1:]
    for run in grid[:-1]:
        plan.finish(run, VAL[run.prior_weight])
        assert plan.released() == [] and plan.chosen is None  # λ waits for the whole grid
    plan.finish(grid[-1], VAL[grid[-1].prior_weight])
    assert plan.chosen == {"ig": 0.3, "cap": 0.3, "hybrid_mean": 0.3}
    released = plan.released()  # seed 1's baseline is done; seeds 2 and 3 wait for theirs
    assert released and {r.seed for r in released} == {1} and all(r.prior_weight == 0.3 for r in released)
    plan.finish(first[2], None)
    plan.finish(first[3], None)
    released += plan.released()
    expected = final_runs("hwu64", METHODS, [1, 2, 3], 2, plan.chosen, "hybrid_mean")
    assert sorted(released, key=repr) == sorted([r for r in expected if r.method != "baseline"], key=repr)
    assert not plan.complete()
    for run in released:
        plan.finish(run, None)
    assert plan.complete()
    with pytest.raises(ValueError, match="was not handed out"):
        plan.finish(Run("hwu64", "ig", 9, 0.3, "final"), None)


def test_a_selection_run_without_a_score_is_refused():
    plan = _plan()
    plan.finish(plan.released()[0], 0.8)
    with pytest.raises(ValueError, match="no validation accuracy"):
        plan.finish(plan.released()[0], None)


def _fake_grid(workers, submit_with):
    plans = [_plan("hwu64"), _plan("banking77")]
    finished, log, lock = set(), [], threading.Lock()

    def run_one(run):
        reference = Run(run.dataset, "baseline", run.seed, 0.0, run.stage)
        with lock:  # what the run reads is on disk when it starts
            assert run.method == "baseline" or reference in finished
            if run.stage == "final" and run.method != "baseline":
                assert all(r in finished for r in plans[0 if run.dataset == "hwu64" else 1].selection)
            log.append(("start", run))
        time.sleep(0.001)
        with lock:
            finished.add(run)
            log.append(("end", run))
        return {"val_acc": VAL.get(run.prior_weight, 0.8)}, True

    done = []
    schedule(plans, submit_with(run_one), workers, lambda run, record, computed: done.append(run))
    return plans, done, log


def test_two_workers_run_every_run_once_in_dependency_order_alternating_datasets():
    with ThreadPoolExecutor(2) as pool:
        plans, done, log = _fake_grid(2, lambda fn: lambda run: pool.submit(fn, run))
    expected = [r for p in plans for r in [*p.selection, *p.baselines, *p.finals]]
    assert sorted(done, key=repr) == sorted(expected, key=repr) and len(done) == len(set(done))
    assert all(p.complete() for p in plans)
    starts = [run for kind, run in log if kind == "start"]
    assert {starts[0].dataset, starts[1].dataset} == {"hwu64", "banking77"}  # one worker per dataset at first
    running, most = 0, 0
    for kind, _ in log:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == 2


def test_one_worker_runs_the_same_runs_in_process():
    plans, done, _ = _fake_grid(1, lambda fn: lambda run: _Inline().submit(fn, run))
    assert len(done) == sum(len(p.selection) + len(p.baselines) + len(p.finals) for p in plans)


GRID = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from cap_lightning.reproduce import _worker_init
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_grid_workers_end_when_the_grid_process_dies(tmp_path):
    script = tmp_path / "grid.py"
    script.write_text(GRID)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    grid = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(grid.stdout.readline())
    grid.send_signal(signal.SIGKILL)  # as a killed session or `kill -9` does: no cleanup runs in the grid
    grid.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.2)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker outlived the grid"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False
