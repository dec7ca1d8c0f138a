"""The reproduction's results: ``results.{md,csv,png}`` from the run records (docs/cap.md §3.4).

Design decisions:
- Per dataset, one table: mean ± std over the reported seeds, and the **paired** difference of accuracy to the
  CE-only baseline and to the shuffled-prior control (same seeds, same splits; 95 % paired-t interval,
  ``lmcore.statistics``), read as ``no difference`` when the interval contains 0 (fewer than 2 paired seeds: the
  one difference, no interval).
- **Multiple comparisons**: the differences of one table (every prior vs the baseline, and the shuffled prior's
  source vs the shuffled control) are one family; each cell carries its Holm-adjusted paired-t p-value, so a reader
  sees which differences survive the number of comparisons; a cell whose interval excludes 0 but whose Holm p does
  not pass says ``(Holm: no difference)``, in the verdict as in the table. The family has the size the plan gives it:
  in a partial report the comparisons still to run count as p = 1. Paired differences without spread (every seed moved
  by the same amount, as happens with accuracies on a coarse grid) have no t interval to speak of:
  ``lmcore.statistics.verdict`` reads them by the sign test, so 5 seeds that all gained are still ``no difference`` at
  95 % (p = 0.0625).
- Beside it the λ selection (validation accuracy of the tuning seed per λ, the chosen one marked, the tuning seed's
  CE-only baseline as the λ = 0 row) and the notes a reader needs to weigh the priors: teacher accuracy, share of
  all-zero priors, surrogate R², the budget.
- **Robustness**: one table per attack (run directly against each attacked seed's model): clean accuracy, accuracy
  under attack with its paired difference to the baseline and (for the shuffled prior's source) to the shuffled
  control, attack success rate; one Holm family per attack.
- **The teacher's content**: CAP alone − the uniform control, paired over seeds, with whether the two λ match
  (descriptive, outside the Holm family): the comparison free of the few-shot sample's label information.
- **Verdict**: one sentence per dataset on the question the grid is for: does the shuffled prior's source (the CAP
  Hybrid) beat the baseline and the shuffled control beyond the interval, at accuracy and under each attack.
- Every figure is in % (× 100) except seconds and λ·align (λ × the last epoch's mean alignment loss, × 1000: the
  regulariser's pull, which tells whether a control is as strong as the prior it stands in for).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from cap_lightning.report import mean_std
from lmcore.io import atomic_write, atomic_write_text
from lmcore.progress import duration
from lmcore.statistics import PairedInterval, holm, paired_t_interval, paired_t_p_value, verdict

COLUMNS = (
    ("test/acc", "Acc"),
    ("test/macro_f1", "Macro-F1"),
    ("test/p_pred", "p(ŷ|x)"),
    ("test/comp_norm_aopc", "Comp/p ↑"),
    ("test/suff_norm_aopc", "Suff/p ↓"),
)
NOTE_KEYS = (("teacher_acc", "teacher accuracy (gold ranked first)"), ("r2_mean", "surrogate R²"))
# the last epoch's training shares each aligned run logs (``CapModule.alignment``)
SHARE_NOTES = (("train/zero_prior_rows", "training rows with an all-zero prior (left out of the alignment)"),
               ("train/teacher_kept_rows", "training rows with a prior kept by teacher gating"))  # fmt: skip


def interval_text(ci: PairedInterval) -> str:
    """``+m.mm [+l.ll, +h.hh]``: a paired difference with its interval, in points."""
    return f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"


def _seeds_with(records: list[dict], metric: str) -> set[int]:
    return {r["seed"] for r in records if metric in r["metrics"]}


def _descriptive_delta(a: list[float], b: list[float], with_p: bool = False) -> str:
    """A paired difference outside any Holm family: ``Δ [95 % CI] verdict`` (and its unadjusted p), the one
    difference of a single seed, ``–`` for none."""
    if len(a) >= 2:
        ci = paired_t_interval(a, b)
        return f"{interval_text(ci)} {verdict(ci)}" + (f", p {paired_t_p_value(a, b):.2g}" if with_p else "")
    return f"{a[0] - b[0]:+.2f} (n=1)" if a else "–"


def _seed_pairs(records: list[dict], reference: list[dict], metric: str) -> tuple[list[float], list[float]]:
    """``metric`` × 100 of both groups over the seeds both ran, in seed order."""
    mine = {r["seed"]: r["metrics"][metric] for r in records if metric in r["metrics"]}
    theirs = {r["seed"]: r["metrics"][metric] for r in reference if metric in r["metrics"]}
    seeds = sorted(mine.keys() & theirs.keys())
    return [100 * mine[s] for s in seeds], [100 * theirs[s] for s in seeds]


class Comparisons:
    """The paired comparisons of one table, read as a family: each cell is ``Δ [95 % CI] verdict`` with its
    Holm-adjusted paired-t p-value over the family (``lmcore.statistics``). ``planned``: the family's size in the
    plan; a comparison not tested yet (not on disk, or fewer than 2 seeds) counts as p = 1, so an interim p_Holm is
    never smaller than the complete family's can be for the same data. 0: the comparisons tested are the family."""

    def __init__(self, planned: int = 0) -> None:
        self._pairs: dict[tuple, tuple[list[float], list[float]]] = {}
        self.planned = planned

    def add(self, key: tuple, records: list[dict], reference: list[dict], metric: str) -> None:
        self._pairs[key] = _seed_pairs(records, reference, metric)

    def _adjusted(self) -> dict[tuple, float]:
        tested = [k for k, (a, _) in self._pairs.items() if len(a) >= 2]
        if self.planned and len(tested) > self.planned:
            raise ValueError(f"{len(tested)} comparisons tested, {self.planned} planned: the plan is wrong")
        raw = [paired_t_p_value(*self._pairs[k]) for k in tested]
        untested = [1.0] * max(0, self.planned - len(tested))
        return dict(zip(tested, holm([*raw, *untested])))

    def reading(self, key: tuple, adjusted: dict[tuple, float] | None = None) -> str:
        """The verdict of a comparison with ≥ 2 seeds, marked when it does not survive Holm (``adjusted``: the
        family's Holm p-values when the caller has them)."""
        ci = self.interval(key)
        if ci is None:
            raise ValueError(f"{key} has fewer than 2 paired seeds: no interval to read")
        said = verdict(ci)
        if said != "no difference" and (adjusted or self._adjusted())[key] >= 1.0 - ci.confidence:
            said += " (Holm: no difference)"
        return said

    def pairs(self, key: tuple) -> tuple[list[float], list[float]]:
        """The two groups' values (× 100) over the seeds both ran; empty lists for a comparison not added."""
        return self._pairs.get(key, ([], []))

    def interval(self, key: tuple) -> PairedInterval | None:
        a, b = self.pairs(key)
        return paired_t_interval(a, b) if len(a) >= 2 else None

    def cells(self) -> dict[tuple, str]:
        adjusted, out = self._adjusted(), {}
        for key, (a, b) in self._pairs.items():
            if not a:
                out[key] = "–"
            elif len(a) == 1:
                out[key] = f"{a[0] - b[0]:+.2f} (n=1)"
            else:
                ci = paired_t_interval(a, b)
                out[key] = f"{interval_text(ci)} {self.reading(key, adjusted)}, p_Holm {adjusted[key]:.2g}"
        return out


def _attacks(records: list[dict]) -> list[str]:
    return sorted({k.split("/")[1] for r in records for k in r["metrics"] if k.startswith("adv/")})


def _heldout_columns(records: list[dict]) -> list[tuple[str, str]]:
    keys = sorted({k for r in records for k in r["metrics"] if k.startswith("test/heldout_spearman")})
    return [(k, f"ρ(IG, {k.removeprefix('test/heldout_spearman').lstrip('_') or 'prior'})") for k in keys]


def _notes(records: list[dict]) -> list[str]:
    """Prior diagnostics (means over the runs that logged them), one entry per diagnostic and prior source."""
    out = []
    for suffix, what in NOTE_KEYS:
        values: dict[str, list[float]] = {}
        for r in records:
            for k, v in r.get("prior", {}).items():
                if k.endswith(suffix) and isinstance(v, int | float):
                    source = k.removeprefix("prior/").removesuffix(suffix).strip("_/") or "prior"
                    values.setdefault(source, []).append(float(v))
        scale, unit = (1.0, "") if suffix == "r2_mean" else (100.0, " %")
        out += [f"{what} ({src}): {scale * statistics.mean(v):.3g}{unit}" for src, v in sorted(values.items())]
    return out


def _share_notes(by_method: dict[str, list[dict]]) -> list[str]:
    """Per logged share (``SHARE_NOTES``), its mean over each method's runs, in %."""
    out = []
    for key, what in SHARE_NOTES:
        logged = {m: [r["train"][key] for r in g if key in r.get("train", {})] for m, g in by_method.items()}
        means = {m: statistics.mean(v) for m, v in logged.items() if v}
        if means:
            out.append(f"{what}: " + ", ".join(f"{m} {100 * v:.3g} %" for m, v in means.items()))
    return out


def _reference_notes(by_method: dict[str, list[dict]]) -> list[str]:
    """When the runs read different reference weights (``reference_sha256``: a reference retrained after its
    checkpoint was lost gives the same validation accuracy, not the same bits), which method read which: their
    IG / LIME / Hybrid priors, and so the held-out ρ columns, come from different copies of the reference."""
    read = {
        m: sorted({r["reference_sha256"][:8] for r in g if r.get("reference_sha256")}) for m, g in by_method.items()
    }
    if len({h for hashes in read.values() for h in hashes}) < 2:
        return []
    said = ", ".join(f"{m}: {'/'.join(h)}" for m, h in read.items() if h)
    return [f"runs read different copies of the reference ({said}; SHA-256 prefixes of the weights), so their "
            "reference-based priors and ρ columns come from different copies: equal only if the retrain reproduced "
            "the reference to rounding, which a re-score of a baseline against both shows"]  # fmt: skip


def _by_method(records: list[dict]) -> dict[str, list[dict]]:
    by_method: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        by_method.setdefault(r["method"], []).append(r)
    return by_method


def _planned_comparisons(methods: list[str], control_of: str) -> int:
    """The family's size in a plan of ``methods``: every prior vs the baseline, ``control_of`` vs the shuffled."""
    return sum(m != "baseline" for m in methods) + (control_of in methods and "shuffled" in methods)


def _compare(
    by_method: dict[str, list[dict]], metric: str, control_of: str, methods: list[str] | None = None
) -> Comparisons:
    """Every prior vs the baseline and ``control_of`` vs the shuffled control, on ``metric``: one family, of the
    size the plan of ``methods`` gives it (None: the methods on disk)."""
    family = Comparisons(_planned_comparisons(list(methods or by_method), control_of))
    base, shuffled = by_method.get("baseline", []), by_method.get("shuffled", [])
    for method, group in by_method.items():
        if method != "baseline":
            family.add((method, "baseline"), group, base, metric)
        if method == control_of and shuffled:
            family.add((method, "shuffled"), group, shuffled, metric)
    return family


def agreement_table(by_method: dict[str, list[dict]], control_of: str = "hybrid_mean") -> list[str]:
    """Per method, held-out ρ(model IG, the prior it was aligned to; a control: the prior it stands in for), paired
    with the baseline's ρ with the same prior over the seeds both ran: did the alignment move the model's
    attributions towards its prior on new texts? Descriptive (outside the accuracy family's Holm)."""
    base = by_method.get("baseline", [])
    lines: list[str] = []
    for method, group in by_method.items():
        prior = control_of if method in ("shuffled", "uniform") else method
        metric = f"test/heldout_spearman_{prior}"
        if method == "baseline" or not any(metric in r["metrics"] for r in group):
            continue
        a, b = _seed_pairs(group, base, metric)
        delta = _descriptive_delta(a, b)
        means = f"{statistics.fmean(a):.2f} / {statistics.fmean(b):.2f}" if a else "–"
        lines.append(f"| {method} | {prior} | {delta} | {means} |")
    if not lines:
        return []
    head = ["", "Held-out agreement with the prior aligned to (ρ × 100, model IG vs prior on the held-out texts, "
            "paired with the baseline's ρ with the same prior over seeds; 95 % paired-t, not Holm-adjusted):", "",
            "| Method | Prior | Δ ρ vs baseline [95 % CI] | ρ method / baseline |", "|---|---|---|---|"]  # fmt: skip
    return head + lines


def teacher_content_table(by_method: dict[str, list[dict]], source: str = "cap", control: str = "uniform") -> list[str]:
    """``source`` (CAP alone) − ``control`` (the uniform prior), paired over the seeds both ran, on test accuracy and
    held-out ρ with ``source``'s prior: the test of the teacher's content free of the few-shot sample's label
    information (neither reads the reference). Descriptive, outside the accuracy family's Holm. The control runs at
    the λ of ``control_of``, ``source`` at its own: a difference is the prior's only where the two λ match, and the
    table says whether they do."""
    mine, theirs = by_method.get(source, []), by_method.get(control, [])
    if not mine or not theirs:
        return []
    lams = [sorted({r["prior_weight"] for r in group}) for group in (mine, theirs)]
    said = " / ".join(",".join(f"{lam:g}" for lam in group) for group in lams)
    said += " (matched)" if lams[0] == lams[1] else " (**not matched**: λ confounds the difference)"
    lines = []
    metrics = (("test/acc", "test accuracy"), (f"test/heldout_spearman_{source}", f"held-out ρ(IG, {source})"))
    for metric, name in metrics:
        a, b = _seed_pairs(mine, theirs, metric)
        if not a:
            continue
        seeds = ",".join(str(s) for s in sorted(_seeds_with(mine, metric) & _seeds_with(theirs, metric)))
        delta = _descriptive_delta(a, b, with_p=True)
        lines.append(f"| {name} | {seeds} | {said} | {delta} | {statistics.fmean(a):.2f} / {statistics.fmean(b):.2f} |")
    if not lines:
        return []
    head = ["", f"The teacher's content: {source} − {control}, paired over seeds (neither reads the reference, so no "
            "label information of the few-shot sample; 95 % paired-t, not Holm-adjusted). The ρ row shows that the "
            f"uniform prior took (a flat target flattens the attributions, so ρ with any prior falls); whether "
            f"{source} moved them towards its own prior is the agreement table's {source} − baseline:", "",
            f"| Metric (× 100) | Seeds | λ {source} / {control} | Δ [95 % CI] | {source} / {control} |",
            "|---|---|---|---|---|"]  # fmt: skip
    return head + lines


def selection_table(selection: dict[str, Any]) -> list[str]:
    """The λ grid: validation accuracy of the tuning seed per prior and λ (chosen in bold), the CE-only baseline of
    the same seed beside it (the accuracy the regulariser has to keep)."""
    scores, chosen = selection["scores"], selection["chosen"] or {}
    if not scores:
        return []
    lambdas = sorted({lam for s in scores.values() for lam in s})
    head = "| Prior | " + " | ".join(f"λ={lam:g}" for lam in lambdas) + " |"
    lines = ["λ selection (validation accuracy, tuning seed; **chosen**):", "", head, "|---|" + "---|" * len(lambdas)]
    if selection.get("baseline_val") is not None:
        base = f"{100 * selection['baseline_val']:.2f}"
        lines.append("| baseline (λ=0) | " + " | ".join([base] * len(lambdas)) + " |")
    for method, s in scores.items():
        cells = [f"{100 * s[lam]:.2f}" if lam in s else "–" for lam in lambdas]
        cells = [f"**{c}**" if lam == chosen.get(method) else c for c, lam in zip(cells, lambdas)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def robustness_table(
    by_method: dict[str, list[dict]], control_of: str = "hybrid_mean", methods: list[str] | None = None
) -> list[str]:
    """Per attack: clean and attacked accuracy, the paired difference of accuracy under attack to the baseline (and,
    for ``control_of``, to the shuffled control) over the attacked seeds, attack success rate. One Holm family per
    attack (of the planned size: ``_compare``)."""
    records = [r for group in by_method.values() for r in group]
    lines: list[str] = []
    for attack in _attacks(records):
        key = f"adv/{attack}/attacked_acc"
        family = _compare(by_method, key, control_of, methods)
        cells = family.cells()
        lines += ["", f"Under attack: **{attack}** (accuracy on the attacked test utterances, paired over seeds):", "",
                  "| Method | Seeds | Clean acc | Acc under attack | Δ vs baseline [95 % CI] | Δ vs shuffled [95 % CI] "
                  "| ASR ↓ |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for method, group in by_method.items():
            attacked = [r for r in group if key in r["metrics"]]
            if not attacked:
                continue
            seeds = ",".join(str(r["seed"]) for r in attacked)
            clean, under, asr = (mean_std([r["metrics"][f"adv/{attack}/{m}"] for r in attacked
                                           if math.isfinite(r["metrics"].get(f"adv/{attack}/{m}", math.nan))])
                                 for m in ("clean_acc", "attacked_acc", "attack_success_rate"))  # fmt: skip
            # a model with no correct clean prediction has no attack success rate (NaN): left out, "–" if none
            lines.append(f"| {method} | {seeds} | {clean} | {under} | {cells.get((method, 'baseline'), '–')} | "
                         f"{cells.get((method, 'shuffled'), '–')} | {asr} |")  # fmt: skip
    return lines


def verdict_line(
    by_method: dict[str, list[dict]], control_of: str = "hybrid_mean", methods: list[str] | None = None
) -> str:
    """One sentence: does ``control_of`` beat the baseline and the shuffled control, at accuracy and under each
    attack, beyond the 95 % interval, read as the table reads it (marked when it does not survive Holm over the
    table's family)? One paired seed: its difference, no interval."""
    if control_of not in by_method:
        return f"Verdict: {control_of} has no reported run yet."
    records = [r for group in by_method.values() for r in group]
    parts = []
    for label, metric in [("test accuracy", "test/acc"),
                          *((f"accuracy under {a}", f"adv/{a}/attacked_acc") for a in _attacks(records))]:  # fmt: skip
        family = _compare(by_method, metric, control_of, methods)
        said = []
        for ref in ("baseline", "shuffled"):
            ci, (a, b) = family.interval((control_of, ref)), family.pairs((control_of, ref))
            if ci:
                shown = f"{family.reading((control_of, ref))} ({interval_text(ci)})"
            else:
                shown = f"{a[0] - b[0]:+.2f} (n=1, no interval)" if a else "not measured"
            said.append(f"vs {ref}: {shown}")
        parts.append(f"{label} {', '.join(said)}")
    return f"**Verdict ({control_of}, 95 % paired-t)**: " + "; ".join(parts) + "."


FIT_SECONDS_NOTE = (
    "Fit s: median (min–max) over seeds of the wall time of fit, test and faithfulness; the first run "
    "that needs a prior on texts no run has scored (its training sample, or the held-out texts of the "
    "ρ columns) computes and caches it, so one seed can take many times the others"
)


def median_range(values: list[float]) -> str:
    """``median (min–max)`` in whole units, robust to the one run that paid for a shared cache; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def regulariser_strength(group: list[dict]) -> str:
    """λ × the last epoch's mean alignment loss, mean ± std over the group's runs (× 1000; "–" for the baseline):
    how hard each prior pulled, so a control that pulls less than the prior it stands in for is seen as such."""
    values = [r["prior_weight"] * r["train"]["train/align"] for r in group if "train/align" in r.get("train", {})]
    return mean_std(values, 1000.0)


def dataset_table(
    records: list[dict], selection: dict[str, Any], control_of: str = "hybrid_mean", methods: list[str] | None = None
) -> list[str]:
    """Markdown lines for one dataset: λ selection, the results table with paired differences (one Holm family: every
    prior vs the baseline and ``control_of`` vs the shuffled control, the prior that control shuffles, at its λ; of
    the size the plan of ``methods`` gives it, so a partial table's p_Holm counts what is still to run), the
    robustness tables, the verdict, notes."""
    by_method = _by_method(records)
    lines = [f"\n**{records[0]['dataset']}**\n", *selection_table(selection)]
    cells = _compare(by_method, "test/acc", control_of, methods).cells()
    columns = [*COLUMNS, *_heldout_columns(records)]
    header = ["Method", "λ", "Seeds", "Acc", "Δ Acc vs baseline [95 % CI]", "Δ Acc vs shuffled [95 % CI]",
              *(name for _, name in columns[1:]), "λ·align", "Prior s", "Fit s"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, group in by_method.items():
        lam = "–" if method == "baseline" else f"{group[0]['prior_weight']:g}"
        vs_base, vs_shuffled = cells.get((method, "baseline"), "–"), cells.get((method, "shuffled"), "–")
        values = [mean_std([r["metrics"][k] for r in group if k in r["metrics"]]) for k, _ in columns]
        prior_s = [r["prior"]["seconds"] for r in group if "seconds" in r.get("prior", {})]
        costs = [regulariser_strength(group), mean_std(prior_s, 1.0), median_range([r["fit_seconds"] for r in group])]
        seeds = ",".join(str(r["seed"]) for r in group)
        lines.append(f"| {method} | {lam} | {seeds} | {values[0]} | {vs_base} | {vs_shuffled} | "
                     + " | ".join(values[1:] + costs) + " |")  # fmt: skip
    lines += agreement_table(by_method, control_of)
    lines += teacher_content_table(by_method)
    lines += robustness_table(by_method, control_of, methods)
    lines += ["", verdict_line(by_method, control_of, methods)]
    notes = [FIT_SECONDS_NOTE, *_notes(records), *_share_notes(by_method), *_reference_notes(by_method)]
    return [*lines, "", "Notes: " + "; ".join(notes) + "."]


def csv_rows(records: list[dict]) -> list[dict[str, Any]]:
    return [{"dataset": r["dataset"], "method": r["method"], "seed": r["seed"], "prior_weight": r["prior_weight"],
             **r["metrics"], "prior_seconds": r.get("prior", {}).get("seconds"), "fit_seconds": r["fit_seconds"],
             "commit": r.get("commit")} for r in records]  # fmt: skip


def paired_deltas(rows: list[dict], metric: str) -> dict[str, list[float]]:
    """Per prior method (run order): ``metric`` − the baseline's at the same seed, × 100, over the seeds both ran."""
    base = {r["seed"]: r["metrics"][metric] for r in rows if r["method"] == "baseline" and metric in r["metrics"]}
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] != "baseline" and r["seed"] in base and metric in r["metrics"]:
            out.setdefault(r["method"], []).append(100 * (r["metrics"][metric] - base[r["seed"]]))
    return out


def _delta_panel(ax, deltas: list[tuple[str, dict[str, list[float]]]], methods: list[str], title: str) -> None:
    """Dots per seed and mean with its 95 % paired-t interval, per method; one colour per series (metric)."""
    width = 0.7 / max(len(deltas), 1)
    for j, (label, series) in enumerate(deltas):
        x0 = j * width - 0.35 + width / 2
        for i, method in enumerate(methods):
            d = series.get(method, [])
            ax.scatter([i + x0] * len(d), d, s=12, alpha=0.5, color=f"C{j}", label=label if i == 0 else None)
            if len(d) >= 2:
                ci = paired_t_interval(d, [0.0] * len(d))
                ax.errorbar(i + x0, ci.mean, yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="o", color=f"C{j}",
                            mec="k", ecolor="k", capsize=3)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_title(title, fontsize=10)
    if not methods:
        ax.text(0.5, 0.5, "no prior-method run yet", ha="center", va="center", transform=ax.transAxes)
    elif len(deltas) > 1:
        ax.legend(fontsize=8)


def _selection_panel(ax, selection: dict[str, Any] | None, dataset: str) -> None:
    """Validation accuracy of the tuning seed against λ per tuned prior, the CE-only run's as a dashed line, the
    chosen λ starred."""
    scores = (selection or {}).get("scores") or {}
    chosen = (selection or {}).get("chosen") or {}
    for j, (method, by_lam) in enumerate(scores.items()):
        lams = sorted(by_lam)
        ax.plot(lams, [100 * by_lam[lam] for lam in lams], "o-", color=f"C{j}", label=method)
        if method in chosen and chosen[method] in by_lam:
            ax.plot([chosen[method]], [100 * by_lam[chosen[method]]], "*", ms=14, color=f"C{j}", mec="k")
    if (selection or {}).get("baseline_val") is not None:
        ax.axhline(100 * selection["baseline_val"], color="grey", ls="--", lw=1, label="CE-only (λ = 0)")
    if scores:
        lambdas = sorted({lam for by_lam in scores.values() for lam in by_lam})
        ax.set_xscale("log")
        ax.set_xticks(lambdas, [f"{lam:g}" for lam in lambdas])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no λ-selection run yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("λ")
    ax.set_title(f"{dataset}: λ selection, validation accuracy of the tuning seed (%)", fontsize=10)


def plot(records: list[dict], path: Path, selections: list[dict] | None = None) -> None:
    """Per dataset (a row): Δ test accuracy vs the CE-only baseline per method; Δ accuracy under each attack; the λ
    selection. Differences in points, one dot per seed, mean with 95 % paired-t interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    by_dataset = {s["dataset"]: s for s in selections or []}
    fig, axes = plt.subplots(len(datasets), 3, figsize=(16, 4.2 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        rows = [r for r in records if r["dataset"] == dataset]
        methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "baseline"]
        _delta_panel(row[0], [("test accuracy", paired_deltas(rows, "test/acc"))], methods,
                     f"{dataset}: Δ test accuracy vs CE-only (points)")  # fmt: skip
        attacks = [(a, paired_deltas(rows, f"adv/{a}/attacked_acc")) for a in _attacks(rows)]
        attacked = [m for m in methods if any(m in series for _, series in attacks)]
        _delta_panel(row[1], attacks, attacked, f"{dataset}: Δ accuracy under attack vs CE-only (points)")
        _selection_panel(row[2], by_dataset.get(dataset), dataset)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def header(settings: dict[str, Any], commit: str, wall: float, finished: tuple[int, int] | None = None) -> str:
    """The settings paragraph. ``finished``: (finished, planned) runs of a report read from the records
    (``--report-only``), whose time is the runs' own times summed (a grid resumed across sessions has no one wall
    time); None: a grid's own report, timed by its wall clock."""
    s = settings
    split = s["split"] + (f" k={s['shots']}" if s["split"] == "few_shot" else "")
    if finished is None:
        time_said, opening = f"wall time {duration(wall)}", ""
    else:
        done, planned = finished
        time_said = (f"time summed over the runs {duration(wall)} (each run's fit, test, faithfulness and attacks; "
                     f"the grid runs {s.get('workers', 1)} at a time)")  # fmt: skip
        opening = (
            f"**PARTIAL: {done} of {planned} planned runs finished** (a grid stopped early has the central comparison "
            "first).\n\n"
            if done < planned
            else f"Report of all {planned} planned runs, read from their records.\n\n"
        )
    sample = (f", trained on another {s['shots']}-shot sample, so the runs whose prior comes from it (IG, LIME, the "
              f"Hybrid, the shuffled control) see that sample's labels through their prior while the baseline, CAP "
              f"alone and the uniform control do not; the shuffle keeps a text's prior values but not which words "
              f"carry them, and that is where the sample's label information sits, so {s['control_of']} − shuffled "
              f"measures it with the prior's content, and CAP alone − uniform is the comparison free of it"
              if s["split"] == "few_shot" else "")  # fmt: skip
    return opening + (
        f"Student {s['student']}, teacher {s['teacher']}, {split}. **Budget (every run)**: {s['epochs']} epochs, batch "
        f"{s['batch_size']}, lr {s['lr']} (linear warm-up/decay), max {s['max_length']} tokens, best validation "
        f"checkpoint (checked every {s['val_every']} epochs). Alignment: {s['prior_loss']} on self-attribution "
        f"`{s['attribution']}` (ig_steps {s['ig_steps']}), λ warm-up {s['prior_warmup_steps']} steps, λ chosen per "
        f"prior from {s['lambdas']} on validation accuracy of tuning seed {s['tune_seed']}; controls (uniform, "
        f"within-text shuffled) and IG / LIME alone at the λ of {s['control_of']}. Reported seeds {s['seeds']} (IG / "
        f"LIME alone: the first {s['few_seeds']}), paired with the baseline's; intervals: paired t, df = seeds − 1 "
        "(a difference equal on every seed has no spread and is read by the two-sided sign test instead, which "
        "cannot reject with fewer than 6 seeds: p ≥ 0.0625 at 5); p Holm-adjusted over the table's planned "
        "comparisons. "
        f"IG / LIME references: another seed's CE baseline{sample}. Priors: IG "
        f"{s['ig_prior_steps']} steps, LIME "
        f"{s['lime_samples']} masks, CAP {s['cap_samples']} masks ({s['cap_target']}, teacher in "
        f"{s['teacher_dtype']}). Attacks: {s['attack_recipes'] or 'none'} on {s['attack_examples']} seeded test "
        f"utterances against the models of seeds {s['attack_seeds']}. Commit {commit}; {time_said}. "
        "All figures in % except seconds and λ·align (λ × last-epoch alignment loss, × 1000).\n"
    )


def write_results(
    out: Path,
    records: list[dict],
    selections: list[dict],
    settings: dict[str, Any],
    commit: str,
    wall: float,
    finished: tuple[int, int] | None = None,
) -> None:
    """``results.md`` (header, per-dataset tables), ``results.csv`` (one row per run), ``results.png``; ``finished``
    as in ``header``."""
    lines = [header(settings, commit, wall, finished)]
    for selection in selections:
        rows = [r for r in records if r["dataset"] == selection["dataset"]]
        if rows:
            lines += dataset_table(rows, selection, settings.get("control_of", "hybrid_mean"), settings.get("methods"))
    text = "\n".join(lines).strip() + "\n"
    atomic_write_text(out / "results.md", text)
    rows = csv_rows(records)
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("dataset", "method", "seed"), k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    plot(records, out / "results.png", selections)
    print(text)
