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
from cap_lightning.reproduce_plan import DatasetPlan, Run, final_runs, reference_of, selection_runs

METHODS = ["baseline", "ig", "cap", "hybrid_mean", "uniform", "shuffled"]
VAL = {0.1: 0.5, 0.3: 0.7, 1.0: 0.6}  # validation accuracy by λ: 0.3 wins


def _plan(dataset="hwu64"):
    return DatasetPlan(dataset, METHODS, [0.1, 0.3, 1.0], tune_seed=0, seeds=[1, 2, 3], few_seeds=2)


def test_runs_are_released_when_their_inputs_exist():
    plan = _plan()
    tuning = Run("hwu64", "baseline", 0, 0.0, "select")
    baselines = [Run("hwu64", "baseline", s, 0.0, "final") for s in (1, 2, 3)]
    assert plan.released() == [tuning]  # the reference of every reported baseline's held-out priors
    assert plan.released() == []  # handed out once
    plan.finish(tuning, 0.8)
    assert plan.released() == baselines  # the grid waits for its reference, the first reported baseline
    plan.finish(baselines[1], None)
    assert plan.released() == []
    plan.finish(baselines[0], None)
    grid = plan.released()
    assert grid == selection_runs("hwu64", METHODS, [0.1, 0.3, 1.0], 0)[1:]
    assert [r.method for r in grid] == ["hybrid_mean"] * 3 + ["cap"] * 3  # IG alone takes the Hybrid's λ
    released = []
    for run in grid:
        plan.finish(run, VAL[run.prior_weight])
        released += plan.released()
        if run == grid[2]:  # the Hybrid's grid is done: it, the controls and IG are released at its λ
            assert plan.chosen == {"hybrid_mean": 0.3}
            assert {r.method for r in released} == {"hybrid_mean", "shuffled", "uniform", "ig"}
            assert [r.method for r in released][:4] == ["hybrid_mean"] * 3 + ["shuffled"]  # central comparison first
    assert plan.chosen == {"hybrid_mean": 0.3, "cap": 0.3}
    expected = final_runs("hwu64", METHODS, [1, 2, 3], 2, plan.chosen, "hybrid_mean")
    assert sorted(released, key=repr) == sorted([r for r in expected if r.method != "baseline"], key=repr)
    assert all(r.prior_weight == 0.3 for r in released)
    assert not plan.complete()
    for run in [*released, baselines[2]]:
        plan.finish(run, None)
    assert plan.complete()
    with pytest.raises(ValueError, match="was not handed out"):
        plan.finish(Run("hwu64", "ig", 9, 0.3, "final"), None)


def test_a_selection_run_without_a_score_is_refused():
    plan = _plan()
    plan.finish(plan.released()[0], 0.8)
    plan.finish(plan.released()[0], None)  # the first reported baseline: the grid's reference
    grid = [r for r in plan.released() if r.stage == "select"]
    with pytest.raises(ValueError, match="no validation accuracy"):
        plan.finish(grid[0], None)


def _fake_grid(workers, submit_with):
    plans = [_plan("hwu64"), _plan("banking77")]
    finished, log, lock = set(), [], threading.Lock()

    def run_one(run):
        with lock:  # what the run reads is on disk when it starts
            if run != Run(run.dataset, "baseline", 0, 0.0, "select"):
                assert reference_of(run, 0, 1) in finished
            if run.stage == "final" and run.method in ("hybrid_mean", "shuffled", "uniform", "ig"):
                plan = plans[0 if run.dataset == "hwu64" else 1]
                assert all(r in finished for r in plan.selection if r.method == "hybrid_mean")
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
import multiprocessing, os, signal, sys, time
from concurrent.futures import ProcessPoolExecutor
from cap_lightning.reproduce import _worker_init
def deaf():  # as Lightning's trainer does: SIGTERM is caught, not fatal
    signal.signal(signal.SIGTERM, lambda *a: None)
    time.sleep(120)
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(1, os.getpid()))
    worker = pool.submit(os.getpid).result()
    pool.submit(deaf)
    time.sleep(2)  # the handler is installed
    print(worker, flush=True)
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
