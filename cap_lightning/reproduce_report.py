"""The reproduction's results: ``results.{md,csv,png}`` from the run records (docs/cap.md §3.4).

Design decisions:
- Per dataset, one table: mean ± std over the reported seeds, and the **paired** difference of accuracy to the
  CE-only baseline and to the shuffled-prior control (same seeds, same splits; 95 % paired-t interval,
  ``lmcore.statistics``), read as ``no difference`` when the interval contains 0.
- Beside it the λ selection (validation accuracy of the tuning seed per λ, the chosen one marked) and the notes a
  reader needs to weigh the priors: teacher accuracy, share of all-zero priors, surrogate R², the budget.
- Robustness columns come from the attacks run directly against the first reported seed's models (one seed: no
  interval).
- Every figure is in % (× 100) except seconds.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from cap_lightning.report import mean_std, paired_difference
from lmcore.io import atomic_write, atomic_write_text
from lmcore.progress import duration
from lmcore.statistics import paired_t_interval

COLUMNS = (
    ("test/acc", "Acc"),
    ("test/macro_f1", "Macro-F1"),
    ("test/p_pred", "p(ŷ|x)"),
    ("test/comp_norm_aopc", "Comp/p ↑"),
    ("test/suff_norm_aopc", "Suff/p ↓"),
)
NOTE_KEYS = (("teacher_acc", "teacher accuracy (gold ranked first)"), ("r2_mean", "surrogate R²"),
             ("zero_prior_share", "share of all-zero priors"))  # fmt: skip


def paired(records: list[dict], reference: list[dict], metric: str = "test/acc") -> str:
    """``Δ [low, high] verdict`` (× 100) of ``metric`` over the seeds both ran, paired-t 95 %."""
    mine = {r["seed"]: r["metrics"][metric] for r in records if metric in r["metrics"]}
    theirs = {r["seed"]: r["metrics"][metric] for r in reference if metric in r["metrics"]}
    return paired_difference(mine, theirs, show_n=False)


def _adv_columns(records: list[dict]) -> list[tuple[str, str]]:
    keys = sorted({k for r in records for k in r["metrics"] if k.startswith("adv/") and not k.endswith("seconds")})
    keys = [k for k in keys if not k.endswith("clean_acc")]
    names = {"attacked_acc": "acc under attack", "attack_success_rate": "ASR ↓"}
    return [(k, f"{k.split('/')[1]} {names.get(k.rsplit('/', 1)[1], k)}") for k in keys]


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


def dataset_table(records: list[dict], selection: dict[str, Any], control_of: str = "hybrid_mean") -> list[str]:
    """Markdown lines for one dataset: λ selection, the results table with paired differences, notes. The
    difference to the shuffled control is shown for ``control_of`` only: the control shuffles that prior, at its λ."""
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    base, shuffled = by_method.get("baseline", []), by_method.get("shuffled", [])
    lines = [f"\n**{records[0]['dataset']}**\n"]
    scores, chosen = selection["scores"], selection["chosen"]
    if scores:
        lambdas = sorted({lam for s in scores.values() for lam in s})
        head = "| Prior | " + " | ".join(f"λ={lam:g}" for lam in lambdas) + " |"
        lines += [
            "λ selection (validation accuracy, tuning seed; **chosen**):",
            "",
            head,
            "|---|" + "---|" * len(lambdas),
        ]
        for method, s in scores.items():
            cells = [f"{100 * s[lam]:.2f}" if lam in s else "–" for lam in lambdas]
            cells = [f"**{c}**" if lam == chosen[method] else c for c, lam in zip(cells, lambdas)]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    columns = [*COLUMNS, *_heldout_columns(records), *_adv_columns(records)]
    header = ["Method", "λ", "Seeds", "Acc", "Δ Acc vs baseline [95 % CI]", "Δ Acc vs shuffled [95 % CI]",
              *(name for _, name in columns[1:]), "Prior s", "Fit s"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, group in by_method.items():
        group = sorted(group, key=lambda r: r["seed"])
        lam = "–" if method == "baseline" else f"{group[0]['prior_weight']:g}"
        vs_base = "–" if method == "baseline" else paired(group, base)
        vs_shuffled = paired(group, shuffled) if method == control_of and shuffled else "–"
        cells = [mean_std([r["metrics"][k] for r in group if k in r["metrics"]]) for k, _ in columns]
        prior_s = [r["prior"]["seconds"] for r in group if "seconds" in r.get("prior", {})]
        costs = [mean_std(prior_s, 1.0), mean_std([r["fit_seconds"] for r in group], 1.0)]
        seeds = ",".join(str(r["seed"]) for r in group)
        lines.append(f"| {method} | {lam} | {seeds} | {cells[0]} | {vs_base} | {vs_shuffled} | "
                     + " | ".join(cells[1:] + costs) + " |")  # fmt: skip
    notes = _notes(records)
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return lines


def csv_rows(records: list[dict]) -> list[dict[str, Any]]:
    return [{"dataset": r["dataset"], "method": r["method"], "seed": r["seed"], "prior_weight": r["prior_weight"],
             **r["metrics"], "prior_seconds": r.get("prior", {}).get("seconds"), "fit_seconds": r["fit_seconds"],
             "commit": r.get("commit")} for r in records]  # fmt: skip


def plot(records: list[dict], path: Path) -> None:
    """Per dataset: accuracy difference to the baseline per method, one dot per seed, mean with 95 % CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in records if r["dataset"] == dataset]
        base = {r["seed"]: r["metrics"]["test/acc"] for r in rows if r["method"] == "baseline"}
        methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "baseline"]
        for i, method in enumerate(methods):
            d = [100 * (r["metrics"]["test/acc"] - base[r["seed"]]) for r in rows
                 if r["method"] == method and r["seed"] in base and "test/acc" in r["metrics"]]  # fmt: skip
            ax.scatter([i] * len(d), d, s=12, alpha=0.6)
            if len(d) >= 2:
                ci = paired_t_interval(d, [0.0] * len(d))
                ax.errorbar(i, ci.mean, yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="o", color="k", capsize=4)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(methods)), methods, rotation=30)
        ax.set_title(f"{dataset}: Δ test accuracy vs CE-only (points)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def header(settings: dict[str, Any], commit: str, wall: float) -> str:
    s = settings
    split = s["split"] + (f" k={s['shots']}" if s["split"] == "few_shot" else "")
    return (
        f"Student {s['student']}, teacher {s['teacher']}, {split}. **Budget (every run)**: {s['epochs']} epochs, batch "
        f"{s['batch_size']}, lr {s['lr']} (linear warm-up/decay), max {s['max_length']} tokens, best validation "
        f"checkpoint (checked every {s['val_every']} epochs). Alignment: {s['prior_loss']} on self-attribution "
        f"`{s['attribution']}` (ig_steps {s['ig_steps']}), λ warm-up {s['prior_warmup_steps']} steps, λ chosen per "
        f"prior from {s['lambdas']} on validation accuracy of tuning seed {s['tune_seed']}; controls (uniform, "
        f"within-text shuffled) and IG / LIME alone at the λ of {s['control_of']}. Reported seeds {s['seeds']} (IG / "
        f"LIME alone: the first {s['few_seeds']}), paired with the baseline's; intervals: paired t, df = seeds − 1. "
        "IG / LIME references: another seed's CE baseline. Priors: IG "
        f"{s['ig_prior_steps']} steps, LIME "
        f"{s['lime_samples']} masks, CAP {s['cap_samples']} masks ({s['cap_target']}, teacher in "
        f"{s['teacher_dtype']}). Attacks: {s['attack_recipes'] or 'none'} on {s['attack_examples']} seeded test "
        f"utterances against the models of seeds {s['attack_seeds']}. Commit {commit}; wall time {duration(wall)}. "
        "All figures in % except seconds.\n"
    )


def write_results(
    out: Path, records: list[dict], selections: list[dict], settings: dict[str, Any], commit: str, wall: float
) -> None:
    """``results.md`` (header, per-dataset tables), ``results.csv`` (one row per run), ``results.png``."""
    lines = [header(settings, commit, wall)]
    for selection in selections:
        rows = [r for r in records if r["dataset"] == selection["dataset"]]
        if rows:
            lines += dataset_table(rows, selection, settings.get("control_of", "hybrid_mean"))
    text = "\n".join(lines).strip() + "\n"
    atomic_write_text(out / "results.md", text)
    rows = csv_rows(records)
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("dataset", "method", "seed"), k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    plot(records, out / "results.png")
    print(text)
