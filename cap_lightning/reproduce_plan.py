"""The reproduction's plan: which runs, in which order, and how λ is chosen (docs/cap.md §7).

Design decisions:
- **Tune on one seed, report on others.** λ of CAP and the CAP Hybrid is chosen on the validation accuracy of the
  *tuning seed* (its own few-shot sample and initialisation); the reported seeds are different ones, so the chosen
  λ is not scored on the run that chose it. Selection runs never read the test split (``test_after_fit false``).
- **IG and LIME alone are not tuned** (``UNTUNED``): they run at the λ chosen for ``control_of`` (the CAP Hybrid),
  like the controls; their λ grid would cost a third of the selection and answer no question of the grid.
- **One budget.** Every run of a dataset trains with the same epochs, batch, schedule and learning rate; only the
  prior and λ differ.
- **Controls at the chosen λ.** ``uniform`` (every content word the same score) and ``shuffled`` (the Hybrid
  prior's scores permuted within each text) run at the λ chosen for ``control_of``, through the same code path.
- **Ties go to the weaker intervention**: equal validation accuracy picks the smaller λ.
- **References from another seed** (``reference_of``): the IG / LIME prior of a reported run comes from the tuning
  seed's CE baseline, and that of a selection run from the first reported seed's: a CE baseline trained the same
  way on another few-shot sample, never the run's own seed (whose baseline would make an IG prior a distillation of
  the baseline's own IG, and ρ(baseline IG, IG prior) a self-correlation).
- Order per dataset: tuning baseline → reported baselines (an early convergence check) → selection grid (the
  Hybrid first) → reported runs: ``control_of``, ``shuffled``, the other tuned priors, ``uniform``, IG, LIME, so a
  grid stopped early has the central comparison first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PRIOR_METHODS: tuple[str, ...] = ("ig", "lime", "cap", "hybrid_mean", "hybrid_max")
UNTUNED: tuple[str, ...] = ("ig", "lime")  # run at the λ of control_of
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


def reference_of(run: Run, tune_seed: int, first_seed: int) -> Run:
    """The CE baseline whose checkpoint is ``run``'s IG / LIME reference (and, for a reported run, the reference of
    its held-out priors): another seed's, so no prior distils the run's own baseline."""
    if run.stage == "select":
        return Run(run.dataset, "baseline", first_seed, 0.0, "final")
    return Run(run.dataset, "baseline", tune_seed, 0.0, "select")


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


def tuned_methods(methods: Sequence[str], control_of: str) -> list[str]:
    """The prior methods whose λ is selected: all but ``UNTUNED`` ones, which take ``control_of``'s λ when it runs."""
    return [m for m in methods if m in PRIOR_METHODS and (m not in UNTUNED or control_of not in methods)]


def borrows_lambda(method: str, methods: Sequence[str], control_of: str) -> bool:
    """Whether ``method`` runs at ``control_of``'s λ (the controls, and the untuned when ``control_of`` runs)."""
    return method in CONTROLS or (method in UNTUNED and control_of in methods)


def method_lambdas(methods: Sequence[str], chosen: Mapping[str, float], control_of: str) -> dict[str, float]:
    """λ of each reported prior method or control whose λ source is in ``chosen``: its own, or ``control_of``'s for
    the controls and the untuned (``borrows_lambda``)."""
    out = {}
    for m in methods:
        source = control_of if borrows_lambda(m, methods, control_of) else m
        if m != "baseline" and source in chosen:
            out[m] = chosen[source]
    return out


def selection_runs(
    dataset: str, methods: Sequence[str], lambdas: Sequence[float], seed: int, control_of: str = "hybrid_mean"
) -> list[Run]:
    """The tuning seed's baseline, then every tuned prior method at every λ, ``control_of`` first (the controls and
    ``UNTUNED`` take its λ)."""
    tuned = sorted(tuned_methods(methods, control_of), key=lambda m: m != control_of)
    return [Run(dataset, "baseline", seed, 0.0, "select"), *(Run(dataset, m, seed, float(lam), "select")
                                                             for m in tuned for lam in lambdas)]  # fmt: skip


def choose_lambda(scores: Mapping[float, float]) -> float:
    """The λ with the best validation score; ties go to the smaller λ.

    Raises:
        ValueError: no scores.
    """
    if not scores:
        raise ValueError("no validation scores to choose λ from")
    return min(scores, key=lambda lam: (-scores[lam], lam))


def final_order(methods: Sequence[str], control_of: str) -> list[str]:
    """The reported methods in run order: ``control_of``, ``shuffled``, the other tuned priors, ``uniform``, then
    the untuned single sources (so a grid stopped early has the central comparison first)."""
    rank = {control_of: 0, "shuffled": 1, "uniform": 3}
    order = [m for m in methods if m != "baseline"]
    return sorted(order, key=lambda m: rank.get(m, 4 if m in UNTUNED else 2))


def reported_runs(
    dataset: str, lam: Mapping[str, float], seeds: Sequence[int], few_seeds: int, control_of: str
) -> list[Run]:
    """The reported runs of the prior methods and controls in ``lam`` (each at its λ), in ``final_order``; the
    untuned single sources on the first ``few_seeds`` seeds."""
    return [Run(dataset, m, s, lam[m], "final") for m in final_order(list(lam), control_of)
            for s in (seeds[:few_seeds] if m in UNTUNED else seeds)]  # fmt: skip


def final_runs(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    few_seeds: int,
    chosen: Mapping[str, float],
    control_of: str = "hybrid_mean",
) -> list[Run]:
    """The reported runs: baselines first, then the methods in ``final_order`` at their λ (``chosen``; the controls
    and ``UNTUNED`` at ``control_of``'s when it runs). ``few_seeds``: how many of ``seeds`` the single-source IG /
    LIME priors run (the CAP ones and the controls run all of them)."""
    lam = method_lambdas(methods, chosen, control_of)
    return [Run(dataset, "baseline", s, 0.0, "final") for s in seeds] + reported_runs(
        dataset, lam, seeds, few_seeds, control_of
    )


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
        self.tune_seed = tune_seed
        self.selection = selection_runs(dataset, methods, lambdas, tune_seed, control_of)
        self.baselines = [Run(dataset, "baseline", s, 0.0, "final") for s in seeds]
        self.scores: dict[str, dict[float, float]] = {}
        self.chosen: dict[str, float] | None = None
        self.baseline_val: float | None = None  # the tuning seed's CE-only validation accuracy (λ = 0)
        self.finals: list[Run] = []
        self._handed: set[Run] = set()
        self._finished: set[Run] = set()

    def planned(self) -> list[Run]:
        """Every run of the plan, the reported prior runs at a placeholder λ (known once the selection finished)."""
        unknown = dict.fromkeys(self.methods, 0.0)
        finals = final_runs(self.dataset, self.methods, self.seeds, self.few_seeds, unknown, self.control_of)
        return [*self.selection, *finals]

    def _tuned_done(self, method: str) -> bool:
        return all(r in self._finished for r in self.selection if r.method == method)

    def finish(self, run: Run, val_acc: float | None) -> None:
        """``run`` is done (on disk); a selection run reports its validation accuracy."""
        if run not in self._handed:
            raise ValueError(f"{run} was not handed out by this plan")
        self._finished.add(run)
        if run.stage == "select" and run.method == "baseline":
            self.baseline_val = val_acc
        if run.stage == "select" and run.method != "baseline":
            if val_acc is None:
                raise ValueError(f"selection run {run} has no validation accuracy to choose λ from")
            self.scores.setdefault(run.method, {})[run.prior_weight] = val_acc
            if self._tuned_done(run.method):
                self.chosen = {**(self.chosen or {}), run.method: choose_lambda(self.scores[run.method])}
                self.finals = self._finals_known()

    def _finals_known(self) -> list[Run]:
        """The reported prior runs whose λ is known: a tuned method's own once its grid finished, ``control_of``'s
        for the controls and the untuned."""
        lam = method_lambdas(self.methods, self.chosen or {}, self.control_of)
        return reported_runs(self.dataset, lam, self.seeds, self.few_seeds, self.control_of)

    def released(self) -> list[Run]:
        """The runs whose inputs exist and that were not handed out yet, in plan order (each is handed out once):
        reported baselines after the tuning baseline (the reference of their held-out priors), the selection grid
        after its reference (the first reported baseline), a reported prior run once its λ is chosen."""
        tuning = self.selection[0]
        ready = [tuning]
        if tuning in self._finished:
            ready += self.baselines
            if reference_of(self.selection[-1], self.tune_seed, self.seeds[0]) in self._finished:
                ready += self.selection[1:]
            ready += self.finals
        new = [r for r in ready if r not in self._handed]
        self._handed.update(new)
        return new

    def complete(self) -> bool:
        done = all(r in self._finished for r in [*self.selection, *self.baselines, *self.finals])
        expected = len(self.planned()) - len(self.selection) - len(self.baselines)
        return done and len(self.finals) == expected


def run_phase(run: Run) -> int:
    """Priority of a released run (lower first): tuning baseline, reported baselines, selection grid, reported."""
    if run.stage == "select":
        return 0 if run.method == "baseline" else 2
    return 1 if run.method == "baseline" else 3
