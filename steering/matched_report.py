"""The matched-KL results: one block per KL budget, every method at its dev-chosen setting, paired differences to
the base model and to CAA over the test questions, per split seed and pooled, plus the score-free references.

Input records (written by ``steering.reproduce``; this module reads records and computes, it runs no model):
- per split seed, the frozen dev selection ``{"split_seed", "budgets", "choices": [{budget, method, chosen,
  min_kl}], "sweeps": {method: rows}}`` (``steering.budget.select_at_budgets``);
- per split seed, the test records (``<setting>.test.json`` of ``SteeringResultsWriter``, with per-example values)
  keyed by ``setting_key``; one of them carries the base model's outcomes;
- per split seed, the score-free references on its test questions (``steering.tasks.references``).

Design decisions:
- Pooled = questions pooled across split seeds: the split seeds' test folds are disjoint (``steering.data``), and
  each question is scored by the setting chosen on a dev set disjoint from it, so the pooled outcomes are one paired
  sample over every tested question. A test-row overlap between seeds is refused rather than pooled.
- A method with no setting within a budget gets a row saying so (and the smallest dev KL it reached), never a
  setting beyond the budget.
- Paired statistics: ``steering.comparisons.paired_difference`` (bootstrap interval, exact McNemar for 0 / 1
  outcomes such as MC1 or the sentiment ``positive_rate``, which decides their verdict; otherwise ``no difference``
  when the interval covers 0), on MC1 and MC2 where the task has them, else on every task metric (sentiment:
  ``p_positive`` and ``positive_rate``). Four references per method: the base model, CAA, the method's own
  no-signal **control** at the same budget (``CONTROL_OF``: GrAInS − random-k, CAA / PCA − random direction), so a
  gain over the base model is also read against what the same kind of push without the signal gives; and every
  method against the random direction (the one control common to all, so GrAInS is read against it too).
- Multiplicity: every paired difference has a p-value (``Difference.p_value``), Holm-adjusted over the distinct
  comparisons of one table (budget × split-seed label × metric; a pair of methods read from both of its rows, e.g.
  CAA − random direction as CAA's control and as the random-direction column, counts once), beside the unadjusted
  verdict (``add_holm``).
- Side effects that differ under one budget: a method's chosen setting can sit further below the budget than
  CAA's. ``lower_kl_rows`` reads each method against CAA given **no more dev KL** (the selection's measure, so no
  choice reads the test split), across budgets: the method at budget b against CAA's chosen setting (any budget)
  with the largest dev KL not above the method's, and CAA at b against the method's setting likewise; Holm over
  that table. A method below CAA in the first is below it at equal or lower side effect; above it in the second,
  above it.
- Verdicts are shown unadjusted and after Holm (``…_verdict_holm``: ``no difference`` unless the adjusted p is
  below 1 − confidence). The MC2 p-value is the paired t test's while its unadjusted verdict is the bootstrap
  interval's; both are over the same paired questions.
- Continuation tasks (sentiment) also record per prompt ``continuation_nll`` (under the base model) and
  ``continuation_tokens``: these are fluency, not task metrics, so they get no paired statistics; the report shows
  the continuation perplexity (exp of the mean NLL over prompts) and mean length beside each chosen setting, the
  base model included, with the dev continuation perplexity of the chosen setting.
- The score-free references (constant scorer, longest answer) score multiple-choice answers; a task without them
  (continuations) gets a line saying they were skipped.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lmcore.statistics import holm
from steering.comparisons import Difference, paired_difference

POOLED = "pooled"
STAT_METRICS = ("mc1", "mc2")  # TruthfulQA; another task's own targets otherwise
REFERENCE_METHOD = "caa"
# each method's no-signal control at the same cost: GrAInS masks random tokens instead of attributed ones (random-k);
# the paired-difference methods get a random unit direction
CONTROL_OF = {"grains": "random_k", "caa": "random_direction", "pca": "random_direction"}
RANDOM_DIRECTION = "random_direction"  # every method is also read against it (for CAA / PCA it is the control)
REFERENCES = ("base", "caa", "control", "random")  # column suffixes of the paired differences
REFERENCE_TITLES = {"base": "base", "caa": "CAA", "control": "control", "random": "random direction"}
SIDE_METRICS = ("kl", "nll")
FLUENCY_METRICS = ("continuation_nll", "continuation_tokens")  # continuation tasks: reported, not tested


def setting_key(method: str, k: int | None, layers: Sequence[int], alpha: float) -> str:
    """File-name stem of one chosen setting: ``grains_k10_L8-11_a4``."""
    span = f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else f"{layers[0]}"
    return f"{method}{'' if k is None else f'_k{k}'}_L{span}_a{alpha:g}"


def chosen_key(method: str, chosen: Mapping[str, Any], uses_k: bool) -> str:
    return setting_key(method, chosen["k"] if uses_k else None, chosen["layers"], chosen["alpha"])


def chosen_settings(selection: Mapping[str, Any], uses_k: Mapping[str, bool]) -> list[tuple[str, str, dict]]:
    """The distinct chosen settings of a frozen selection as (key, method, sweep row), sorted by key: the settings
    the test stage runs, the first of which also scores the base model."""
    out: dict[str, tuple[str, str, dict]] = {}
    for c in selection["choices"]:
        if c["chosen"] is not None:
            key = chosen_key(c["method"], c["chosen"], uses_k[c["method"]])
            out.setdefault(key, (key, c["method"], c["chosen"]))
    return [out[k] for k in sorted(out)]


def outcomes(record: Mapping[str, Any], condition: str, metric: str) -> tuple[list[int], list[float]]:
    """(indices into the test split, values) of ``<condition>/<metric>`` from a test record."""
    per = (record.get("per_example") or {}).get(f"{condition}/{metric}")
    if per is None:
        raise ValueError(f"test record {record.get('vector_path')} has no per-example {condition}/{metric}")
    return list(per["index"]), list(per["value"])


def test_rows(record: Mapping[str, Any]) -> list[int]:
    return list(((record.get("splits") or {}).get("rows") or {}).get("test") or [])


class SeedResults:
    """The records of one split seed: selection, test records by setting key, base record, references."""

    def __init__(self, selection: Mapping[str, Any], tests: Mapping[str, Mapping[str, Any]], base_key: str,
                 references: Mapping[str, Mapping[str, float]], uses_k: Mapping[str, bool],
                 nulls: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:  # fmt: skip
        self.seed = selection["split_seed"]
        self.label = "split" if self.seed is None else str(self.seed)  # the config's own split without split seeds
        self.selection, self.tests, self.references, self.uses_k = selection, tests, references, uses_k
        self.base = tests[base_key]
        self.nulls = dict(nulls or {})  # random-direction setting key → test records of its null draws 1 … N

    def choice(self, budget: float, method: str) -> Mapping[str, Any]:
        return next(c for c in self.selection["choices"] if c["budget"] == budget and c["method"] == method)

    def record(self, budget: float, method: str) -> Mapping[str, Any] | None:
        c = self.choice(budget, method)["chosen"]
        return None if c is None else self.tests[chosen_key(method, c, self.uses_k[method])]

    def targets(self) -> list[str]:
        """The task metrics the base model was scored on (``mc1``, ``mc2``, ``binary`` for TruthfulQA)."""
        names = [k.split("/", 1)[1] for k in self.base.get("per_example") or {} if k.startswith("base/")]
        return [n for n in names if n not in SIDE_METRICS and n not in FLUENCY_METRICS]

    def has_fluency(self) -> bool:
        """Whether the test records carry the continuation fluency (continuation tasks)."""
        return f"base/{FLUENCY_METRICS[0]}" in (self.base.get("per_example") or {})

    def values(self, budget: float, method: str, metric: str) -> list[float] | None:
        """Per-question test values of ``method`` at ``budget`` (``base``: the unsteered model), aligned with the
        base record's questions."""
        if method == "base":
            return outcomes(self.base, "base", metric)[1]
        rec = self.record(budget, method)
        return None if rec is None else self.steered(rec, metric)

    def steered(self, rec: Mapping[str, Any], metric: str) -> list[float]:
        """Per-question steered values of a test record, aligned with the base record's questions (``kl``, which
        the base model has not, is aligned with its first task metric)."""
        index, values = outcomes(rec, "steered", metric)
        base_index, _ = outcomes(self.base, "base", self.targets()[0] if metric == "kl" else metric)
        if index != base_index or test_rows(rec) != test_rows(self.base):
            raise ValueError(f"split seed {self.seed}: {rec.get('vector_path')} was tested on other questions than "
                             "the base model; rerun its test stage")  # fmt: skip
        return values


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def _diff_columns(prefix: str, d: Difference | None) -> dict[str, Any]:
    if d is None:
        return {f"{prefix}": None, f"{prefix}_low": None, f"{prefix}_high": None, f"{prefix}_p_mcnemar": None,
                f"{prefix}_p": None, f"{prefix}_verdict": None}  # fmt: skip
    return {prefix: d.mean, f"{prefix}_low": d.low, f"{prefix}_high": d.high, f"{prefix}_p_mcnemar": d.p_mcnemar,
            f"{prefix}_p": d.p_value, f"{prefix}_verdict": d.verdict, f"{prefix}_cell": d.cell()}  # fmt: skip


def check_disjoint(seeds: Sequence[SeedResults]) -> None:
    seen: dict[int, int] = {}
    for s in seeds:
        for row in test_rows(s.base):
            if row in seen:
                raise ValueError(f"test row {row} is in the test split of split seeds {seen[row]} and {s.seed}: "
                                 "questions can only be pooled across disjoint test folds")  # fmt: skip
            seen[row] = s.seed


def stat_metrics(targets: Sequence[str]) -> list[str]:
    """The metrics with paired statistics: MC1 and MC2 where the task has them, else all its targets."""
    return [m for m in STAT_METRICS if m in targets] or list(targets)


def result_rows(
    seeds: Sequence[SeedResults], budgets: Sequence[float], methods: Sequence[str], confidence: float = 0.95,
    resamples: int = 2000,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per (budget, method incl. ``base``, split seed or ``pooled``), with the paired differences."""
    if len(seeds) > 1:
        check_disjoint(seeds)
    targets = seeds[0].targets()
    rows = []
    for budget in budgets:
        for method in ["base", *methods]:
            groups = [(s.label, [s]) for s in seeds] + ([(POOLED, list(seeds))] if len(seeds) > 1 else [])
            for label, group in groups:
                rows.append(_row(group, label, budget, method, methods, targets, confidence, resamples))
    add_holm(rows, stat_metrics(targets), confidence)
    return rows


def add_holm(rows: Sequence[dict[str, Any]], metrics: Sequence[str], confidence: float = 0.95) -> None:
    """Add ``d_<metric>_<ref>_p_holm`` and ``…_verdict_holm`` to ``rows`` in place: Holm over the distinct
    comparisons (unordered pairs of methods) of each budget × split-seed label × metric; each comparison keeps the
    p-value of its first row."""
    for key in dict.fromkeys((r["budget"], r["split_seed"]) for r in rows):
        table = [r for r in rows if (r["budget"], r["split_seed"]) == key]
        for metric in metrics:
            family: dict[frozenset[str], float] = {}
            cells = [(r, f"d_{metric}_{ref}") for r in table for ref in REFERENCES]
            for r, prefix in cells:
                if r.get(f"{prefix}_p") is not None:
                    family.setdefault(frozenset((r["method"], r[f"{prefix}_against"])), r[f"{prefix}_p"])
            adjusted = dict(zip(family, holm(list(family.values()))))
            for r, prefix in cells:
                if r.get(f"{prefix}_p") is not None:
                    _set_holm(r, prefix, adjusted[frozenset((r["method"], r[f"{prefix}_against"]))], confidence)


def _row(group: Sequence[SeedResults], label: str, budget: float, method: str, methods: Sequence[str],
         targets: Sequence[str], confidence: float, resamples: int) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"budget": budget, "method": method, "split_seed": label}
    choices = [None if method == "base" else s.choice(budget, method) for s in group]
    if method != "base":
        chosen = [c["chosen"] for c in choices]
        if any(c is None for c in chosen):
            missing = [s.seed for s, c in zip(group, chosen) if c is None]
            kls = [c["min_kl"] for c in choices if c["chosen"] is None and c["min_kl"] is not None]
            row["note"] = (f"no setting within the budget on dev (split seeds {missing}; smallest dev KL "
                           f"{min(kls):.4g})" if kls else f"no setting (split seeds {missing})")  # fmt: skip
            return row
        row["setting"] = "; ".join(
            chosen_key(method, c, s.uses_k[method]).removeprefix(method + "_") for s, c in zip(group, chosen)
        )
        row["dev_value"] = _mean([c["value"] for c in chosen])
        row["dev_kl"] = _mean([c["kl"] for c in chosen]) if all(c.get("kl") is not None for c in chosen) else None
        recs = [s.record(budget, method) for s in group]
        cond = "steered"
    else:
        recs, cond = [s.base for s in group], "base"
        row["dev_value"] = _mean([s.selection["sweeps"][methods[0]][0]["value"] for s in group]) if methods else None
    row["n_test"] = sum(len(outcomes(r, cond, targets[0])[0]) for r in recs)
    for name, key in (*((t, f"{cond}/{t}") for t in targets), ("kl", "steered/kl"), ("nll", f"{cond}/nll")):
        have = all(key in (r.get("per_example") or {}) for r in recs) and (name != "kl" or cond == "steered")
        row[name] = _mean([v for r in recs for v in outcomes(r, *key.split("/"))[1]]) if have else None
    row["ppl"] = None if row["nll"] is None else math.exp(row["nll"])
    if all(s.has_fluency() for s in group):
        for name in FLUENCY_METRICS:
            row[name] = _mean([v for r in recs for v in outcomes(r, cond, name)[1]])
        row["cont_ppl"] = math.exp(row.pop("continuation_nll"))
        row["cont_tokens"] = row.pop("continuation_tokens")
        if method != "base":
            dev = [c["chosen"].get("continuation_ppl") for c in choices]
        else:
            dev = [s.selection["sweeps"][methods[0]][0].get("continuation_ppl") for s in group] if methods else [None]
        row["dev_cont_ppl"] = None if any(v is None for v in dev) else _mean(dev)
    for metric in stat_metrics(targets):
        mine = pooled_values(group, budget, method, metric)
        refs = (("base", "base"), (REFERENCE_METHOD, "caa"), (CONTROL_OF.get(method), "control"),
                (RANDOM_DIRECTION, "random"))  # fmt: skip
        for ref, suffix in refs:
            prefix = f"d_{metric}_{suffix}"
            other = None if ref is None or ref == method or (ref != "base" and ref not in methods) else pooled_values(
                group, budget, ref, metric)  # fmt: skip
            d = None if mine is None or other is None else paired_difference(metric, mine, other, confidence,
                                                                               resamples)  # fmt: skip
            row.update(_diff_columns(prefix, d))
            row[f"{prefix}_against"] = ref
    return row


def pooled_values(group: Sequence[SeedResults], budget: float, method: str, metric: str) -> list[float] | None:
    """``method``'s per-question values at ``budget`` over the split seeds of ``group`` (None: no setting)."""
    out: list[float] = []
    for s in group:
        values = s.values(budget, method, metric)
        if values is None:
            return None
        out += values
    return out


def lower_kl_rows(
    seeds: Sequence[SeedResults], rows: Sequence[Mapping[str, Any]], methods: Sequence[str], confidence: float = 0.95,
    resamples: int = 2000,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each method against CAA given no more side effect, across budgets (module docstring), per split-seed label of
    ``rows`` (``result_rows``). The other side is matched on **dev** KL (what the selection saw; for a pooled label
    the mean over the split seeds), so no choice reads the test split; both sides' test KL is reported beside it.
    ``direction`` ``caa_at_most``: the method at ``budget`` against CAA's chosen setting (at ``caa_budget``) with
    the largest dev KL not above the method's; ``method_at_most``: CAA at ``caa_budget`` against the method's
    setting likewise. Differences are method − CAA, Holm-adjusted over the rows of one label and metric
    (``d_<metric>_p_holm``, ``d_<metric>_verdict_holm``). A side with no setting gets a ``note``."""
    if REFERENCE_METHOD not in methods:
        return []
    by_label = {s.label: [s] for s in seeds} | ({POOLED: list(seeds)} if len(seeds) > 1 else {})
    metrics = stat_metrics(seeds[0].targets())
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    out = []
    for label, group in by_label.items():
        table = {(r["method"], r["budget"]): r for r in rows if r["split_seed"] == label and not r.get("note")}
        dev = {key: r["dev_kl"] for key, r in table.items() if r.get("dev_kl") is not None}
        block = []
        for method in (m for m in methods if m != REFERENCE_METHOD):
            for direction, mover, fixed in (("caa_at_most", REFERENCE_METHOD, method),
                                            ("method_at_most", method, REFERENCE_METHOD)):  # fmt: skip
                for budget in budgets:
                    block.append(_lower_kl_row(group, label, method, direction, mover, fixed, budget, table, dev,
                                               metrics, confidence, resamples))  # fmt: skip
        for metric in metrics:
            tested = [r for r in block if r.get(f"d_{metric}_p") is not None]
            for r, adjusted in zip(tested, holm([r[f"d_{metric}_p"] for r in tested])):
                _set_holm(r, f"d_{metric}", adjusted, confidence)
        out += block
    return out


def _lower_kl_row(group: Sequence[SeedResults], label: str, method: str, direction: str, mover: str, fixed: str,
                  budget: float, table: Mapping[tuple[str, float], Mapping[str, Any]],
                  dev: Mapping[tuple[str, float], float], metrics: Sequence[str], confidence: float,
                  resamples: int) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"split_seed": label, "method": method, "direction": direction}
    side, other = ("", "caa_") if fixed == method else ("caa_", "")
    row[f"{side}budget"] = budget
    if (fixed, budget) not in dev:
        row["note"] = f"{fixed} has no chosen setting within budget {budget:g}"
        return row
    limit = dev[(fixed, budget)]
    row[f"{side}dev_kl"], row[f"{side}kl"] = limit, table[(fixed, budget)]["kl"]
    below = [(k, b) for (m, b), k in dev.items() if m == mover and k <= limit]
    if not below:
        row["note"] = f"{mover} has no chosen setting at or below dev KL {limit:.4g}"
        return row
    k, b = max(below, key=lambda kb: (kb[0], -kb[1]))
    row[f"{other}budget"], row[f"{other}dev_kl"], row[f"{other}kl"] = b, k, table[(mover, b)]["kl"]
    for metric in metrics:
        mine = pooled_values(group, row["budget"], method, metric)
        theirs = pooled_values(group, row["caa_budget"], REFERENCE_METHOD, metric)
        row.update(_diff_columns(f"d_{metric}", paired_difference(metric, mine, theirs, confidence, resamples)))
    return row


def _set_holm(row: dict[str, Any], prefix: str, p_holm: float, confidence: float) -> None:
    """``<prefix>_p_holm`` and ``<prefix>_verdict_holm`` (the verdict, or ``no difference`` when the adjusted p is
    not below 1 − confidence)."""
    row[f"{prefix}_p_holm"] = p_holm
    row[f"{prefix}_verdict_holm"] = row[f"{prefix}_verdict"] if p_holm < 1.0 - confidence else "no difference"


def _verdict_cell(row: Mapping[str, Any], prefix: str) -> str:
    """``higher; Holm p 0.012`` (``…; after Holm: no difference`` when the adjustment changes the verdict)."""
    said, p_holm = row.get(f"{prefix}_verdict") or "", row.get(f"{prefix}_p_holm")
    if p_holm is None:
        return said
    after = row.get(f"{prefix}_verdict_holm")
    return f"{said}; Holm p {p_holm:.3g}" + ("" if after == said else f"; after Holm: {after}")


def _at(row: Mapping[str, Any], side: str) -> str:
    """``0.1 (dev 0.0612, test 0.0589)`` of one side of a ``lower_kl_rows`` row."""
    if row.get(f"{side}dev_kl") is None:
        return "–" if row.get(f"{side}budget") is None else f"{row[f'{side}budget']:g} (none)"
    return f"{row[f'{side}budget']:g} (dev {row[f'{side}dev_kl']:.4f}, test {row[f'{side}kl']:.4f})"


def lower_kl_markdown(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], label: str,
                      confidence: float = 0.95) -> str:  # fmt: skip
    """The ``lower_kl_rows`` of split-seed label ``label`` as a Markdown section ('' when there are none)."""
    block = [r for r in rows if r["split_seed"] == label]
    if not block:
        return ""
    cols = ["method", "side held at no more dev KL", "method at budget (KL)", "CAA at budget (KL)"]
    for m in metrics:
        cols += [f"{m}: method − CAA [{confidence:.0%} CI]", "verdict (Holm over this table)"]
    lines = ["### Against CAA at no more side effect", "",
             "Each method's chosen setting against CAA's chosen setting (of any budget) with the largest dev KL not "
             "above the method's, and CAA's against the method's likewise (matched on dev KL, the selection's own "
             "measure; pooled: the mean over split seeds, a point estimate; test KL beside it as a check): below "
             "CAA in the first, a method is below it at equal or lower side effect; above it in the second, above "
             "it.", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in block:
        side = "CAA" if r["direction"] == "caa_at_most" else r["method"]
        cells = [r["method"], side, _at(r, ""), _at(r, "caa_")]
        if r.get("note"):
            lines.append("| " + " | ".join(cells) + f" | {r['note']} |" + " |" * (len(cols) - 5))
            continue
        for m in metrics:
            cells += [r[f"d_{m}_cell"], _verdict_cell(r, f"d_{m}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def lower_kl_csv(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    columns = ["split_seed", "method", "direction", "budget", "dev_kl", "kl", "caa_budget", "caa_dev_kl", "caa_kl",
               *(f"d_{m}{x}" for m in metrics for x in ("", "_low", "_high", "_p", "_p_holm", "_verdict",
                                                         "_verdict_holm")), "note"]  # fmt: skip
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([[_fmt(r.get(c)) for c in columns] for r in rows])
    return buf.getvalue()


def reference_rows(seeds: Sequence[SeedResults]) -> list[dict[str, Any]]:
    """Score-free reference metrics per split seed and pooled (question-weighted)."""
    rows = []
    for s in seeds:
        for name, metrics in s.references.items():
            rows.append({"reference": name, "split_seed": s.label, "n_test": metrics["n"],
                         **{k: v for k, v in metrics.items() if k != "n"}})  # fmt: skip
    if len(seeds) > 1:
        for name in seeds[0].references:
            per = [s.references[name] for s in seeds]
            n = sum(p["n"] for p in per)
            keys = [k for k in per[0] if k != "n"]
            rows.append({"reference": name, "split_seed": POOLED, "n_test": n,
                         **{k: sum(p[k] * p["n"] for p in per) / n for k in keys}})  # fmt: skip
    return rows


FLUENCY_COLUMNS = ("dev_cont_ppl", "cont_ppl", "cont_tokens")  # empty for MC tasks


def csv_columns(targets: Sequence[str]) -> list[str]:
    diffs = [f"d_{m}_{r}{x}" for m in stat_metrics(targets) for r in REFERENCES
             for x in ("", "_low", "_high", "_p_mcnemar", "_p", "_p_holm", "_verdict", "_verdict_holm")]  # fmt: skip
    return ["budget", "method", "split_seed", "setting", "dev_value", "dev_kl", "n_test", *targets, "kl", "ppl",
            *FLUENCY_COLUMNS, *diffs, "note"]  # fmt: skip


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return str(v)


def results_csv(rows: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> str:
    columns = csv_columns(targets)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([[_fmt(r.get(c)) for c in columns] for r in rows])
    return buf.getvalue()


def _budget_title(budget: float) -> str:
    return "no KL budget" if budget == float("inf") else f"dev KL(base ‖ steered) ≤ {budget:g} nats"


def results_markdown(
    rows: Sequence[Mapping[str, Any]], references: Sequence[Mapping[str, Any]], targets: Sequence[str], target: str,
    seeds_label: str, header: Sequence[str] = (), confidence: float = 0.95,
) -> str:  # fmt: skip
    """Markdown: the header lines, the score-free references, then one table per budget (rows with ``split_seed``
    ``seeds_label``: ``pooled`` or one seed)."""
    lines = [*header, ""]
    refs = [r for r in references if r["split_seed"] == seeds_label]
    if refs:
        cells = [f"{r['reference']}: " + ", ".join(f"{t} {r[t]:.3f}" for t in targets if t in r) for r in refs]
        lines += ["Score-free references on the same test questions (no model): " + "; ".join(cells), ""]
    else:
        lines += [f"Score-free references (constant scorer, longest answer): skipped; they score multiple-choice "
                  f"answers and this task's metrics ({', '.join(targets)}) are not.", ""]  # fmt: skip
    stats = stat_metrics(targets)
    fluency = any(r.get("cont_ppl") is not None for r in rows)
    cols = ["method", "setting (per split seed)", f"dev {target}", "dev KL", "test KL", "test prompt ppl", *targets]
    if fluency:
        lines += ["Fluency: continuation perplexity under the base model (exp of the mean per-token NLL over "
                  "prompts), dev (the chosen setting's sweep row) and test, and mean continuation length in tokens.",
                  ""]  # fmt: skip
        cols += ["dev cont. ppl", "test cont. ppl", "cont. tokens"]
    for ref in REFERENCES:
        for m in stats:
            cols += [f"{m} − {REFERENCE_TITLES[ref]} [{confidence:.0%} CI]", "verdict"]
    lines += ["Control: each method against its no-signal control at the same budget (GrAInS − random-k: the same "
              "masking of random tokens; CAA / PCA − random direction), and every method against the random "
              "direction.", ""]  # fmt: skip
    for budget in dict.fromkeys(r["budget"] for r in rows):
        block = [r for r in rows if r["budget"] == budget and r["split_seed"] == seeds_label]
        lines += [f"### {_budget_title(budget)}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in block:
            if r.get("note"):
                lines.append(f"| {r['method']} | {r['note']} |" + " |" * (len(cols) - 2))
                continue
            cells = [r["method"], r.get("setting", ""), _fmt(r.get("dev_value")), _fmt(r.get("dev_kl")),
                     _fmt(r.get("kl")), _fmt(r.get("ppl")), *(_fmt(r.get(t)) for t in targets)]  # fmt: skip
            if fluency:
                cells += [_fmt(r.get(c)) for c in FLUENCY_COLUMNS]
            for ref in REFERENCES:
                for m in stats:
                    cells += [r.get(f"d_{m}_{ref}_cell", ""), _verdict_cell(r, f"d_{m}_{ref}")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
