"""The matched-KL figure: each method's dev curve (task metric vs KL) with its Pareto front, and the test points of
the settings chosen at each budget, the base model and the score-free references, on one set of axes.

Design decision: dev and test share the axes because the dev target and the test metric are the same quantity
(e.g. MC2 of a question) on different questions; dev points are small and faint, dev fronts are lines, test points
are large markers (one shape per budget), budgets are dashed verticals. matplotlib is optional (``[plot]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from steering.pareto import SweepRow, pareto_front, steered_rows

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def plot_pareto(
    sweeps: Mapping[str, Sequence[SweepRow]],
    test_points: Sequence[Mapping],
    path: str | Path,
    metric: str,
    budgets: Sequence[float] = (),
    base: Mapping[str, float] | None = None,
    references: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """PNG at ``path``. ``sweeps``: method → dev sweep rows. ``test_points``: ``{method, budget, kl, value}`` of the
    chosen settings on test. ``base``: ``{"dev": v, "test": v}``. ``references``: name → test value (horizontal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {}
    for method, rows in sweeps.items():
        steered = steered_rows(rows)
        if not steered or any(r.get("kl") is None for r in steered):
            continue
        front = pareto_front(rows)
        (line,) = ax.plot([r["kl"] for r in front], [r["value"] for r in front], "-", lw=1.2, label=f"{method} (dev)")
        colours[method] = line.get_color()
        ax.scatter([r["kl"] for r in steered], [r["value"] for r in steered], s=10, alpha=0.35, color=line.get_color())
    order = {b: i for i, b in enumerate(sorted(budgets))}
    for p in test_points:
        if p.get("kl") is None:
            continue
        marker = MARKERS[order.get(p["budget"], 0) % len(MARKERS)]
        ax.scatter([p["kl"]], [p["value"]], s=70, marker=marker, color=colours.get(p["method"], "black"),
                   edgecolors="black", linewidths=0.6, zorder=3)  # fmt: skip
    for b in budgets:
        ax.axvline(b, color="grey", linestyle=":", lw=0.8)
        ax.scatter([], [], marker=MARKERS[order[b] % len(MARKERS)], color="white", edgecolors="black",
                   label=f"test, KL budget {b:g}")  # fmt: skip
    if base:
        for split, marker in (("dev", "x"), ("test", "*")):
            if base.get(split) is not None:
                ax.scatter([0.0], [base[split]], marker=marker, s=80, color="black", label=f"base ({split})", zorder=3)
    for (name, value), style in zip((references or {}).items(), ("--", "-.", ":")):
        ax.axhline(value, color="grey", linestyle=style, lw=1, label=f"{name} (test, score-free)")
    ax.set_xscale("symlog", linthresh=min([*budgets, 0.01]) / 2 if budgets else 0.01)
    ax.set_xlim(left=0)
    ax.set_xlabel("KL(base ‖ steered) on the prompts, nats")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # the suffix may be a temporary name's
    plt.close(fig)
    return path
