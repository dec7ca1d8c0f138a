"""The random-direction null: how far do random unit directions, at the random-direction control's chosen setting,
move a task metric? One draw of the control is one number; a few more draws make it a distribution.

    python -m steering.reproduce ... --null-draws 10 [--null-budgets 0.1]   # test stage, then the report

Design decisions (docs/grains.md §6.10):
- A **null draw** j keeps everything of the random-direction control's chosen setting at a budget (layers, α, each
  layer's norm, the vector's metadata) and replaces each layer's direction by a fresh standard-Gaussian direction
  from a generator seeded by (``seed``, j) only, so draws are independent of each other and of the control's own
  direction (the control is the normalised mean of seeded Gaussian deltas: the same distribution, uniform on each
  layer's sphere). Draw 0 is the control itself.
- Every draw is tested on the same test prompts as the base model and every method; its test KL is reported beside
  it, so the draws are at the side effect of the control (a random direction's KL depends on α and the layers, not
  much on which direction).
- The draws are not selected on dev (the control's α was): the null is "a random push of this size", which is what
  a method's gain over the base model has to exceed to mean the direction carries signal.
- Per budget and metric the report gives the draws' pooled mean differences to the base model (mean, SD, min, max)
  and, per method, its own difference and the one-sided rank p = (1 + #{draws with a difference ≥ the method's}) /
  (1 + draws), over the extra draws (not the control, whose α was picked for its own direction). With 10 draws the
  smallest p is 1/11: a rank, not a test at 5 %; a method far outside [min, max] is what reads as signal.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from steering.matched_report import RANDOM_DIRECTION, SeedResults, chosen_key, pooled_values
from steering.vectors import SteeringVector
from steering.writer import results_path

NULL_SEED = 7_919  # offsets the draws' generators from every other seeded draw in the project


def null_vector(reference: SteeringVector, draw: int) -> SteeringVector:
    """``reference`` with each layer's direction replaced by a seeded Gaussian one of the same norm (draw >= 1).

    The generator is seeded by the draw alone, so draw j is one direction on every split seed (pooled over the folds
    it is one draw, as each method's vector is one vector), whatever the reference's own direction."""
    if draw < 1:
        raise ValueError(f"draw {draw} must be >= 1 (draw 0 is the control itself)")
    g = torch.Generator().manual_seed(NULL_SEED + draw)
    vectors = {}
    for layer in sorted(reference.layers):
        v = reference.vectors[layer]
        u = torch.randn(v.shape, generator=g, dtype=torch.float64)
        vectors[layer] = (u / u.norm() * v.double().norm()).to(v.dtype)
    return SteeringVector(vectors, {**reference.metadata, "null_draw": draw})


def same_vector(a: SteeringVector, b: SteeringVector) -> bool:
    """Whether two vectors steer the same layers with equal values (a saved null draw is reused only then)."""
    return a.layers == b.layers and all(torch.equal(a.vectors[i], b.vectors[i]) for i in a.layers)


def rank_p(observed: float, draws: Sequence[float]) -> float:
    """One-sided rank p of ``observed`` among the null ``draws``: (1 + #{d ≥ observed}) / (1 + len(draws))."""
    if not draws:
        raise ValueError("rank_p needs at least one null draw")
    return (1 + sum(d >= observed for d in draws)) / (1 + len(draws))


def null_summary(draws: Sequence[float], observed: Mapping[str, float | None]) -> dict[str, Any]:
    """The null distribution of pooled differences to the base model and each method's place in it."""
    if not draws:
        raise ValueError("null_summary needs at least one null draw")
    return {
        "n": len(draws),
        "mean": statistics.fmean(draws),
        "sd": statistics.stdev(draws) if len(draws) > 1 else 0.0,
        "min": min(draws),
        "max": max(draws),
        "methods": {m: None if v is None else {"diff": v, "p": rank_p(v, draws)} for m, v in observed.items()},
    }


def null_settings(selection: Mapping[str, Any], budgets: Sequence[float]) -> list[tuple[str, dict]]:
    """The distinct (setting key, sweep row) of the random-direction control chosen at ``budgets`` (a budget where it
    has no setting gets no draws)."""
    out: dict[str, dict] = {}
    for c in selection["choices"]:
        if c["method"] == RANDOM_DIRECTION and c["budget"] in budgets and c["chosen"] is not None:
            key = chosen_key(RANDOM_DIRECTION, c["chosen"], uses_k=False)
            out.setdefault(key, c["chosen"])
    return sorted(out.items())


def null_path(folder: Path, key: str, draw: int) -> Path:
    """Where null draw ``draw`` of the control setting ``key`` lives (its test record beside it)."""
    return folder / "null" / f"{key}_draw{draw}.safetensors"


def null_records(
    folder: Path, selection: Mapping[str, Any], budgets: Sequence[float], draws: int
) -> dict[str, list[dict]]:
    """Setting key → the test records of draws 1 … ``draws``; a missing or stale record is an error."""
    out = {}
    for key, chosen in null_settings(selection, budgets):
        records = []
        for draw in range(1, draws + 1):
            path = results_path(null_path(folder, key, draw))
            rec = json.loads(path.read_text()) if path.is_file() else None
            if rec is None or rec.get("alpha") != chosen["alpha"]:
                raise FileNotFoundError(f"{path} is missing or stale: run the null stage (--null-draws {draws})")
            records.append(rec)
        out[key] = records
    return out


def null_rows(
    seeds: Sequence[SeedResults], budgets: Sequence[float], methods: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Per budget and metric: the null draws' pooled differences to the base model (over every split seed's test
    prompts) and each method's place among them; a budget where a seed's control has no setting gets a note."""
    rows = []
    for budget in budgets:
        chosen = [s.choice(budget, RANDOM_DIRECTION)["chosen"] for s in seeds]
        if any(c is None for c in chosen):
            rows.append({"budget": budget, "note": "the random direction has no setting within this budget"})
            continue
        keys = [chosen_key(RANDOM_DIRECTION, c, uses_k=False) for c in chosen]
        missing = [s.seed for s, k in zip(seeds, keys) if k not in s.nulls]
        if missing:
            raise ValueError(f"budget {budget:g}: split seeds {missing} have no null draws of their control setting; "
                             "report only the budgets the null stage ran (--null-budgets)")  # fmt: skip
        draws = [s.nulls[k] for s, k in zip(seeds, keys)]
        n = len(draws[0])
        if n == 0 or any(len(d) != n for d in draws):
            raise ValueError(f"budget {budget:g}: the split seeds hold {[len(d) for d in draws]} null draws; "
                             "every seed needs the same number >= 1")  # fmt: skip
        kls = [statistics.fmean([v for s, d in zip(seeds, draws) for v in s.steered(d[j], "kl")]) for j in range(n)]
        for metric in metrics:
            base = pooled_values(seeds, budget, "base", metric)
            base_mean = statistics.fmean(base)
            diffs = [statistics.fmean([v for s, d in zip(seeds, draws) for v in s.steered(d[j], metric)]) - base_mean
                     for j in range(n)]  # fmt: skip
            observed = {}
            for m in methods:
                values = pooled_values(seeds, budget, m, metric)
                observed[m] = None if values is None else statistics.fmean(values) - base_mean
            rows.append({"budget": budget, "metric": metric, "setting": "; ".join(k.removeprefix(RANDOM_DIRECTION + "_")
                         for k in keys), "kl": statistics.fmean(kls), "diffs": diffs,
                         **null_summary(diffs, observed)})  # fmt: skip
    return rows


def null_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The null block of ``results.md``: one line per budget and metric."""
    if not rows:
        return ""
    methods = next((list(r["methods"]) for r in rows if "methods" in r), [])
    cols = ["budget", "metric", "control setting (per split seed)", "draws", "draws' test KL",
            "null Δ vs base: mean ± SD [min, max]", *(f"{m}: Δ (rank p)" for m in methods)]  # fmt: skip
    lines = ["", "### Random-direction null", "",
             "Further random directions at the random-direction control's chosen setting (layers, α, norm), tested on "
             "the same prompts; Δ = pooled mean difference to the base model; rank p = (1 + #{draws with Δ ≥ the "
             "method's}) / (1 + draws), one-sided (steering.null_directions).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in rows:
        if r.get("note"):
            lines.append(f"| {r['budget']:g} | {r['note']} |" + " |" * (len(cols) - 2))
            continue
        cells = [f"{r['budget']:g}", r["metric"], r["setting"], str(r["n"]), f"{r['kl']:.4f}",
                 f"{r['mean']:+.4f} ± {r['sd']:.4f} [{r['min']:+.4f}, {r['max']:+.4f}]"]  # fmt: skip
        for m in methods:
            o = r["methods"][m]
            cells.append("" if o is None else f"{o['diff']:+.4f} ({o['p']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
