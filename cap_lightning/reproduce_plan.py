"""The reproduction's plan: which runs, in which order, and how λ is chosen (docs/cap.md §7).

Design decisions:
- **Tune on one seed, report on others.** λ of every prior method is chosen on the validation accuracy of the
  *tuning seed* (its own few-shot sample and initialisation); the reported seeds are different ones, so the chosen
  λ is not scored on the run that chose it. Selection runs never read the test split (``test_after_fit false``).
- **One budget.** Every run of a dataset trains with the same epochs, batch, schedule and learning rate; only the
  prior and λ differ.
- **Controls at the chosen λ.** ``uniform`` (every content word the same score) and ``shuffled`` (the Hybrid
  prior's scores permuted within each text) run at the λ chosen for ``control_of`` (the CAP Hybrid), through the
  same code path.
- **Ties go to the weaker intervention**: equal validation accuracy picks the smaller λ.
- Per dataset the order is: tuning baseline → reported baselines (an early convergence check) → selection grid →
  reported prior runs → controls; prior runs of a seed read that seed's baseline checkpoint as their IG / LIME
  reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PRIOR_METHODS: tuple[str, ...] = ("ig", "lime", "cap", "hybrid_mean", "hybrid_max")
CONTROLS: tuple[str, ...] = ("uniform", "shuffled")
METHODS: tuple[str, ...] = ("baseline", *PRIOR_METHODS, *CONTROLS)
Stage = Literal["select", "final"]


@dataclass(frozen=True)
class Run:
    """One ``lightning fit`` of the reproduction.

    Attributes:
        dataset: grid dataset name.
        method: ``baseline``, a prior method or a control.
        seed: data and training seed.
        prior_weight: λ (0 for the baseline).
        stage: ``select`` (tuning seed, validation only) or ``final`` (reported, tested once).
    """

    dataset: str
    method: str
    seed: int
    prior_weight: float
    stage: Stage

    @property
    def folder(self) -> Path:
        """Where the run lives, relative to the reproduction's output folder."""
        if self.stage == "select":
            lam = "" if self.method == "baseline" else f"/lambda{self.prior_weight:g}"
            return Path(self.dataset) / "select" / f"{self.method}{lam}" / f"s{self.seed}"
        return Path(self.dataset) / self.method / f"s{self.seed}"

    @property
    def reference(self) -> Path:
        """The baseline run whose checkpoint is this run's IG / LIME reference."""
        return Run(self.dataset, "baseline", self.seed, 0.0, self.stage).folder


def check_methods(methods: Sequence[str], control_of: str) -> None:
    """Methods are known, ``baseline`` is among them, and controls have the method they control.

    Raises:
        ValueError: naming the bad value and what is allowed.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; allowed: {list(METHODS)}")
    if "baseline" not in methods:
        raise ValueError("the prior methods use the baseline checkpoint as their reference: keep 'baseline'")
    if any(m in CONTROLS for m in methods) and control_of not in methods:
        raise ValueError(f"the controls run at the λ chosen for {control_of!r}: add it to the methods")
    if control_of not in PRIOR_METHODS:
        raise ValueError(f"control_of must be one of {list(PRIOR_METHODS)}, got {control_of!r}")


def selection_runs(dataset: str, methods: Sequence[str], lambdas: Sequence[float], seed: int) -> list[Run]:
    """The tuning seed's baseline, then every prior method at every λ (controls are not tuned)."""
    runs = [Run(dataset, "baseline", seed, 0.0, "select")]
    runs += [Run(dataset, m, seed, float(lam), "select") for m in methods if m in PRIOR_METHODS for lam in lambdas]
    return runs


def choose_lambda(scores: Mapping[float, float]) -> float:
    """The λ with the best validation score; ties go to the smaller λ.

    Raises:
        ValueError: no scores.
    """
    if not scores:
        raise ValueError("no validation scores to choose λ from")
    return min(scores, key=lambda lam: (-scores[lam], lam))


def final_runs(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    few_seeds: int,
    chosen: Mapping[str, float],
    control_of: str = "hybrid_mean",
) -> list[Run]:
    """The reported runs: baselines first, then each prior method at its chosen λ, then the controls.

    ``few_seeds``: how many of ``seeds`` the single-source IG / LIME priors run (the CAP ones and the controls run
    all of them).
    """
    runs = [Run(dataset, "baseline", s, 0.0, "final") for s in seeds]
    for method in methods:
        if method in PRIOR_METHODS:
            use = seeds[:few_seeds] if method in ("ig", "lime") else seeds
            runs += [Run(dataset, method, s, chosen[method], "final") for s in use]
    for method in methods:
        if method in CONTROLS:
            runs += [Run(dataset, method, s, chosen[control_of], "final") for s in seeds]
    return runs


class DatasetPlan:
    """The runs of one dataset, released as their inputs exist, so that workers can take runs of any dataset.

    A run is released when what it reads is on disk: the tuning baseline and the reported baselines at once; the
    selection grid once the tuning baseline (its IG / LIME reference) finished; a reported prior run or control once
    every selection run finished (λ is chosen then) and its seed's baseline finished. ``released()`` hands each run
    out once; ``finish`` records a finished run and, for a selection run, its validation score.
    """

    def __init__(
        self,
        dataset: str,
        methods: Sequence[str],
        lambdas: Sequence[float],
        tune_seed: int,
        seeds: Sequence[int],
        few_seeds: int,
        control_of: str = "hybrid_mean",
    ) -> None:
        check_methods(methods, control_of)
        self.dataset, self.methods, self.seeds = dataset, list(methods), list(seeds)
        self.few_seeds, self.control_of = few_seeds, control_of
        self.selection = selection_runs(dataset, methods, lambdas, tune_seed)
        self.baselines = [Run(dataset, "baseline", s, 0.0, "final") for s in seeds]
        self.scores: dict[str, dict[float, float]] = {}
        self.chosen: dict[str, float] | None = None
        self.finals: list[Run] = []
        self._handed: set[Run] = set()
        self._finished: set[Run] = set()

    def planned(self) -> list[Run]:
        """Every run of the plan, the reported prior runs at a placeholder λ (known once the selection finished)."""
        unknown = dict.fromkeys(self.methods, 0.0)
        finals = final_runs(self.dataset, self.methods, self.seeds, self.few_seeds, unknown, self.control_of)
        return [*self.selection, *finals]

    def finish(self, run: Run, val_acc: float | None) -> None:
        """``run`` is done (on disk); a selection run reports its validation accuracy."""
        if run not in self._handed:
            raise ValueError(f"{run} was not handed out by this plan")
        self._finished.add(run)
        if run.stage == "select" and run.method != "baseline":
            if val_acc is None:
                raise ValueError(f"selection run {run} has no validation accuracy to choose λ from")
            self.scores.setdefault(run.method, {})[run.prior_weight] = val_acc
        if self.chosen is None and all(r in self._finished for r in self.selection):
            self.chosen = {m: choose_lambda(s) for m, s in self.scores.items()}
            runs = final_runs(self.dataset, self.methods, self.seeds, self.few_seeds, self.chosen, self.control_of)
            self.finals = [r for r in runs if r.method != "baseline"]

    def released(self) -> list[Run]:
        """The runs whose inputs exist and that were not handed out yet, in plan order (each is handed out once)."""
        tuning = self.selection[0]
        ready = [tuning, *self.baselines]
        if tuning in self._finished:
            ready += self.selection[1:]
        ready += [r for r in self.finals if Run(r.dataset, "baseline", r.seed, 0.0, "final") in self._finished]
        new = [r for r in ready if r not in self._handed]
        self._handed.update(new)
        return new

    def complete(self) -> bool:
        return self.chosen is not None and all(r in self._finished for r in [*self.baselines, *self.finals])


def run_phase(run: Run) -> int:
    """Priority of a released run (lower first): tuning baseline, reported baselines, selection grid, reported."""
    if run.stage == "select":
        return 0 if run.method == "baseline" else 2
    return 1 if run.method == "baseline" else 3
