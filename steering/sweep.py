"""Layer × α × k sweeps on the dev split from one saved extraction, the α plot, and the results tables.

Design decisions:
- A sweep reads the deltas ``predict`` saved (every extraction layer, every k of one IG pass), so changing the layer
  group, α or k needs no new attribution: each (k, group) builds a vector from the saved deltas, each α only
  re-scores the dev set under ``steer``. α = 0 (the base model) is scored once.
- k is swept only for the methods that have one (GrAInS, random-k); CAA / PCA deltas do not depend on it.
- Selection maximises the dev value of one target (default ``binary`` for MC tasks, scored on each example's two
  binary choices only: the cheapest signal on the same scale as the test metric; ``p_positive`` for
  sentiment); ties go to the smaller |α|, then the earlier group. The test split is never touched here.
- What a setting's dev value is depends on the task kind, and only ``steering.dev_scoring`` knows it: multiple
  choice (mean target metric over the restricted choices) or continuations (sentiment: greedy continuations of the
  dev prompts judged by a classifier, value ``p_positive`` or ``positive_rate``, plus the fluency
  ``continuation_ppl`` under the base model in every row). The base row can be passed in (``base``), so the
  expensive base continuations are generated once per dev split, not once per method.
- Every steered row also records ``kl``: KL(base ‖ steered) of the next-token distribution on the dev prompts (text
  tasks; one extra prompt-only forward per setting), so a side-effect budget (``select_best(max_kl=...)``) can keep
  the selection from trading fluency for the target: on SmolLM2 the task metric alone keeps rising with α.
- ``plot_sweep`` draws metric vs α, one line per layer group (best k), as a PNG; ``write_tables`` writes Markdown and
  CSV with the same rows. matplotlib is optional (``pip install 'cap-lightning[plot]'``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lmcore.choices import check_choice
from steering.dev_scoring import ContinuationJudging, dev_kind, dev_scores, prepare_dev
from steering.fitting import vector_from_deltas
from steering.hooks import AlphaUnit, Normalize, alpha_scales, steer
from steering.methods import get_method
from steering.prefix_reuse import PrefixStore, reuse_prefix
from steering.tasks.side_effects import prompt_logprobs
from steering.tasks.types import ContinuationExample, MCExample
from steering.vectors import SteeringVector
from steering.writer import load_deltas


def dev_metric(model, tokenizer, examples: Sequence[MCExample], target: str, batch_size: int = 16) -> float:
    """Mean of ``target`` over MC ``examples`` (already restricted or not) under whatever hooks are active."""
    return dev_scores(model, tokenizer, examples, target, batch_size)["value"]


def group_vector(
    deltas_file: str | Path, method: str, k: int, group: Sequence[int], aggregate: str = "pca", mode: str = "both",
    unit_norm: bool = True, metadata: dict | None = None,
) -> SteeringVector:  # fmt: skip
    """The vector of ``method`` for layers ``group`` at ``k`` from a saved extraction (no model needed)."""
    layers, deltas, meta = load_deltas(deltas_file)
    if k not in deltas:
        raise ValueError(f"k {k} was not extracted; {deltas_file} holds k in {sorted(deltas)}")
    missing = [g for g in group if g not in layers]
    if missing:
        raise ValueError(f"layers {missing} were not extracted; {deltas_file} holds layers {layers}")
    idx = [layers.index(g) for g in group]
    pos, neg = deltas[k]
    neg = None if neg is None else neg[:, :, idx]
    meta = {**meta, **(metadata or {}), "k": k, "layers": list(group)}
    return vector_from_deltas(method, pos[:, :, idx], neg, list(group), aggregate, mode, unit_norm, meta)


@torch.no_grad()
def sweep(
    model: nn.Module,
    tokenizer,
    deltas_file: str | Path,
    method: str,
    examples: Sequence[MCExample | ContinuationExample],
    layer_groups: Sequence[Sequence[int]],
    alphas: Sequence[float],
    ks: Sequence[int] | None = None,
    target: str = "binary",
    aggregate: str = "pca",
    mode: str = "both",
    unit_norm: bool = True,
    normalize: Normalize = "per_token",
    batch_size: int = 16,
    judging: ContinuationJudging | None = None,
    base: dict[str, float] | None = None,
    prefix_reuse: bool = True,
    alpha_unit: AlphaUnit = "absolute",
) -> list[dict[str, Any]]:
    """Rows ``{method, k, layers, alpha, target, value, kl}`` over the grid (plus the α = 0 base row); for
    continuation tasks (``judging`` required) each row also has ``p_positive``, ``positive_rate``,
    ``continuation_nll``, ``continuation_ppl``, ``continuation_tokens``. ``base``: the base model's
    ``base_dev_scores`` on the same examples and target, reused instead of scoring the base model again.
    ``prefix_reuse``: on text multiple-choice dev sets, each group's unsteered layers run once per dev input and are
    re-used at every α (``steering.prefix_reuse``; the same rows, less work). ``alpha_unit``: what α means
    (``steering.hooks.steer``); ``layer_norm`` reads each layer's median norm from the deltas file's metadata."""
    if not layer_groups or not alphas:
        raise ValueError(f"layer_groups {layer_groups} and alphas {alphas} must be non-empty")
    dev = prepare_dev(examples, target)  # refuses an empty or unsupported split, or an unknown target, by name
    if dev_kind(dev) == "continuation" and judging is None:
        raise ValueError("continuation examples (task 'sentiment') need judging= (a judge classifier) to be swept")
    check_choice("alpha_unit", alpha_unit, AlphaUnit)
    _, deltas, _ = load_deltas(deltas_file)
    uses_k = get_method(method).uses_k
    ks = list(ks) if ks and uses_k else sorted(deltas)[: None if uses_k else 1]
    vectors = {(k, tuple(g)): group_vector(deltas_file, method, k, g, aggregate, mode, unit_norm) for k in ks
               for g in layer_groups}  # fmt: skip
    for (_, group), vec in vectors.items():  # before any scoring: a layer without a norm is named now
        alpha_scales(vec, group, alpha_unit)
    if base is None:
        base = base_dev_scores(model, tokenizer, examples, target, batch_size, judging)
    rows = [{"method": "base", "k": None, "layers": None, "alpha": 0.0, "target": target, **base}]
    # the KL's base half is the same at every setting: the dev prompts' unsteered log-probabilities, read once
    text_only = all(ex.pixel_values is None for ex in dev)
    base_lps = prompt_logprobs(model, tokenizer, [ex.prompt for ex in dev], batch_size) if text_only else None
    bar = tqdm(total=len(ks) * len(layer_groups) * len(alphas), desc=f"sweep {method} on dev ({len(dev)})", leave=False)
    # MC scoring and the KL read the same dev inputs at every α: the unsteered layers below a group are recorded once
    # (continuations are new text at every α: nothing to re-use; images and caches are refused by reuse_prefix)
    reuse = prefix_reuse and dev_kind(dev) == "mc"
    store = PrefixStore()
    for k in ks:
        for group in layer_groups:
            vec = vectors[k, tuple(group)]
            for alpha in alphas:
                with reuse_prefix(model, store, min(group)) if reuse else nullcontext():
                    steering = partial(steer, model, vec, alpha, normalize=normalize, alpha_unit=alpha_unit)
                    scores = dev_scores(model, tokenizer, dev, target, batch_size, steering, judging, base_lps)
                rows.append({"method": method, "k": k, "layers": list(group), "alpha": float(alpha), "target": target,
                             "value": scores.pop("value"), "kl": scores.pop("kl", None), **scores})  # fmt: skip
                bar.update()
    bar.close()
    return rows


@torch.no_grad()
def base_dev_scores(
    model: nn.Module, tokenizer, examples: Sequence[MCExample | ContinuationExample], target: str,
    batch_size: int = 16, judging: ContinuationJudging | None = None,
) -> dict[str, float]:  # fmt: skip
    """The base model's dev scores (``value`` and, for continuations, the judge metrics and fluency): the α = 0 row
    of every method's sweep on these examples, computed once."""
    return dev_scores(model, tokenizer, prepare_dev(examples, target), target, batch_size, None, judging)


def select_best(rows: Sequence[dict[str, Any]], max_kl: float | None = None) -> dict[str, Any]:
    """The steered row with the highest dev value (ties: smaller |α|, then grid order); with ``max_kl``, only among
    rows whose dev ``kl`` is at most that."""
    steered = [r for r in rows if r["method"] != "base"]
    if not steered:
        raise ValueError("no steered rows to select from")
    if max_kl is not None:
        kls = [r.get("kl") for r in steered]
        if any(v is None for v in kls):
            raise ValueError("max_kl needs the dev KL of every setting; it is measured on text tasks only")
        within = [r for r in steered if r["kl"] <= max_kl]
        if not within:
            raise ValueError(f"no setting keeps the dev KL <= max_kl {max_kl}; the smallest is {min(kls):.4f}")
        steered = within
    return max(enumerate(steered), key=lambda t: (t[1]["value"], -abs(t[1]["alpha"]), -t[0]))[1]


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", max_kl: float | None = None) -> Path:
    """PNG of dev value vs α, one line per layer group (best k per group), the base value dashed; when the rows
    carry ``kl``, a second panel shows dev KL(base ‖ steered) vs α with the ``max_kl`` budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = [r["value"] for r in rows if r["method"] == "base"]
    steered = [r for r in rows if r["method"] != "base"]
    with_kl = bool(steered) and all(r.get("kl") is not None for r in steered)
    fig, axes = plt.subplots(1, 2 if with_kl else 1, figsize=(11 if with_kl else 6, 4), squeeze=False)
    ax, ax_kl = axes[0][0], axes[0][-1]
    for group in dict.fromkeys(tuple(r["layers"]) for r in steered):
        by_k: dict[int, list[dict]] = {}
        for r in steered:
            if tuple(r["layers"]) == group:
                by_k.setdefault(r["k"], []).append(r)
        k, best = max(by_k.items(), key=lambda kv: max(r["value"] for r in kv[1]))
        best = sorted(best, key=lambda r: r["alpha"])
        alphas = [r["alpha"] for r in best]
        xs = [0.0, *alphas] if base else alphas
        ys = [base[0], *[r["value"] for r in best]] if base else [r["value"] for r in best]
        name = f"layer {group[0]}" if len(group) == 1 else f"layers {group[0]}–{group[-1]}"
        (line,) = ax.plot(xs, ys, marker="o", label=f"{name} (k={k})")
        if with_kl:
            ax_kl.plot([0.0, *alphas], [0.0, *[r["kl"] for r in best]], marker="o", color=line.get_color())
    if base:
        ax.axhline(base[0], color="grey", linestyle="--", label="base")
    ax.set_xlabel("α")
    ax.set_ylabel(f"dev {rows[0]['target']}")
    ax.set_title(title)
    ax.legend(fontsize=7)
    if with_kl:
        if max_kl is not None:
            ax_kl.axhline(max_kl, color="grey", linestyle="--", label=f"budget {max_kl:g}")
            ax_kl.legend(fontsize=7)
        if max(r["kl"] for r in steered) > 1:  # large α: KL spans orders of magnitude
            ax_kl.set_yscale("symlog", linthresh=0.01)
        ax_kl.set_ylim(bottom=0)
        ax_kl.set_xlabel("α")
        ax_kl.set_ylabel("dev KL(base ‖ steered), nats")
        ax_kl.set_title("side effect on the dev prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # the suffix may be a temporary name's
    plt.close(fig)
    return path


def write_tables(
    rows: Sequence[dict[str, Any]], stem: str | Path, columns: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv`` with ``columns`` (default: the keys of the first row)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list):
            return f"{v[0]}–{v[-1]}" if len(v) > 1 else str(v[0])
        return "" if v is None else str(v)

    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md_path.write_text("\n".join(md) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[fmt(r.get(c)) for c in columns] for r in rows])
    return md_path, csv_path
