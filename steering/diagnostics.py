"""Vector diagnostics: is a steering vector a stable direction, and how does it relate to another (e.g. CAA)?

    python -m steering.diagnostics runs/steer/.../grains.deltas.safetensors [--against caa.safetensors] [--k 10] \
        [--aggregate pca | pca_uncentred | mean] [--mode both | pos] [--unit-deltas]

Design decisions (docs/grains.md §6.6):
- **Split-half cosine**: the examples are split at random into two halves (seeded, ``repeats`` times); a vector is
  built from each half exactly as the method builds it (same aggregate and mode), and the per-layer cosine of the two
  half-vectors is averaged over the splits (their standard deviation beside it: the spread over splits, not a
  confidence interval). A direction estimated from noise gives about 0 (or a negative value when an orientation is
  decided by noise); a stable one approaches 1. CAA on the same pairs is the yardstick. The splits depend on the
  number of examples and the seed only, so the vectors of one set of examples are compared on the same splits.
- **Gap** ``‖u⁺ − u⁻‖`` before the unit normalisation (``mode="both"``; ``‖u⁺‖`` for ``pos``): with PCA aggregates
  both terms are unit vectors, so a small gap says the P- and Q-masked deltas point the same way.
- **PC1 share**: the fraction of the δ⁺ variance (centred for ``pca``, uncentred otherwise) along the first
  principal component; **common component** ``‖mean δ‖ / rms ‖δ‖``: near 1, centring removes most of the signal.
- **Contrast** d = δ⁺ − δ⁻ (``mode="both"`` deltas): the share of it along one direction and whether that
  direction is only "which side's masking moved h more" (``contrast_stats``); ``--unit-deltas`` rebuilds the
  vector from unit-norm deltas to take those magnitudes out.
- **Cosine with a reference** vector per layer (e.g. GrAInS against CAA).
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Sequence

import torch

from lmcore.choices import check_choice
from steering.methods import get_method
from steering.vectors import Aggregate, Mode, SteeringVector, build_steering_vector


def delta_stats(deltas: torch.Tensor, aggregate: Aggregate = "pca") -> dict[str, float]:
    """``pc1_share`` and ``common_component`` of deltas (N, d) (see the module docstring)."""
    if deltas.ndim != 2 or len(deltas) < 1:
        raise ValueError(f"deltas must have shape (N >= 1, d), got {tuple(deltas.shape)}")
    x = deltas.double()
    mean = x.mean(0)
    rms = x.norm(dim=1).pow(2).mean().sqrt()
    centred = x - mean if aggregate == "pca" else x
    s = torch.linalg.svdvals(centred)
    total = float(s.pow(2).sum())
    share = float(s[0] ** 2) / total if total > 0 else 1.0
    return {"pc1_share": share, "common_component": float(mean.norm() / rms.clamp_min(1e-12))}


def layer_cosines(a: SteeringVector, b: SteeringVector) -> dict[int, float]:
    """Cosine between ``a`` and ``b`` at each layer both steer."""
    shared = sorted(set(a.layers) & set(b.layers))
    if not shared:
        raise ValueError(f"the vectors share no layer: {a.layers} vs {b.layers}")
    return {
        layer: float(torch.nn.functional.cosine_similarity(a.vectors[layer].double(), b.vectors[layer].double(), 0))
        for layer in shared
    }


def split_half_cosines(
    deltas_pos: torch.Tensor,
    deltas_neg: torch.Tensor | None,
    layers: Sequence[int],
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    repeats: int = 20,
    seed: int = 0,
) -> dict[int, list[float]]:
    """Per layer, the cosine between vectors built from two random halves of the examples, one value per split
    (deltas (N, L, d)); the splits depend on N and ``seed`` only, so two vectors of the same examples share them.

    Raises:
        ValueError: fewer than 2 examples, or ``repeats`` < 1.
    """
    n = len(deltas_pos)
    if n < 2 or repeats < 1:
        raise ValueError(f"a split-half cosine needs >= 2 examples and repeats >= 1, got {n} and {repeats}")
    rng = random.Random(seed)
    out: dict[int, list[float]] = {int(layer): [] for layer in layers}
    for _ in range(repeats):
        order = list(range(n))
        rng.shuffle(order)
        halves = [torch.tensor(order[: n // 2]), torch.tensor(order[n // 2 :])]
        a, b = (build_steering_vector(deltas_pos[h], None if deltas_neg is None else deltas_neg[h], layers, aggregate,
                                      mode) for h in halves)  # fmt: skip
        for layer, cos in layer_cosines(a, b).items():
            out[layer].append(cos)
    return out


def contrast_stats(deltas_pos: torch.Tensor, deltas_neg: torch.Tensor) -> dict[str, float]:
    """How much of the contrast d = δ⁺ − δ⁻ (N, d) is one direction, and whether that direction is a magnitude one:
    ``contrast_pc1_share`` (uncentred: the share of Σ‖d‖² along d's first right singular vector) and
    ``contrast_magnitude_corr``, |Pearson r| between each example's projection on it and ‖δ⁺‖ − ‖δ⁻‖ (the sign of
    a singular vector is arbitrary). When δ⁺ and δ⁻ share one direction c (a large common component), d's
    projection on c is ‖δ⁺‖ − ‖δ⁻‖ by construction: a high value says the contrast is "which side moved h more"
    along c, not a new direction; rebuilding from unit-norm deltas (``--unit-deltas``) removes that magnitude."""
    if deltas_pos.shape != deltas_neg.shape or deltas_pos.ndim != 2 or len(deltas_pos) < 3:
        raise ValueError(f"need two (N >= 3, d) delta tensors of one shape, got {tuple(deltas_pos.shape)} and "
                         f"{tuple(deltas_neg.shape)}")  # fmt: skip
    pos, neg = deltas_pos.double(), deltas_neg.double()
    d = pos - neg
    _, s, vh = torch.linalg.svd(d, full_matrices=False)
    total = float(s.pow(2).sum())
    proj, gap = d @ vh[0], pos.norm(dim=1) - neg.norm(dim=1)
    r = torch.corrcoef(torch.stack([proj, gap]))[0, 1]
    return {"contrast_pc1_share": float(s[0] ** 2) / total if total > 0 else 1.0,
            "contrast_magnitude_corr": abs(float(r)) if torch.isfinite(r) else float("nan")}  # fmt: skip


def unit_rows(deltas: torch.Tensor) -> torch.Tensor:
    """Each delta (…, d) scaled to unit norm (zero rows stay zero): a vector built from them weighs every example's
    direction equally, whatever the size of its masking effect."""
    return deltas / deltas.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def vector_diagnostics(
    deltas_pos: torch.Tensor,
    deltas_neg: torch.Tensor | None,
    layers: Sequence[int],
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    reference: SteeringVector | None = None,
    repeats: int = 20,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Per layer: split-half cosine (mean and standard deviation over the splits), gap ``‖u⁺ − u⁻‖`` (or ``‖u⁺‖``),
    δ⁺ PC1 share and common component, the contrast statistics when there are δ⁻ (``contrast_stats``), and the
    cosine with ``reference`` when given. Deltas (N, L, d)."""
    raw = build_steering_vector(deltas_pos, deltas_neg, layers, aggregate, mode)
    halves = split_half_cosines(deltas_pos, deltas_neg, layers, aggregate, mode, repeats, seed)
    against = layer_cosines(raw, reference) if reference is not None else {}
    out = {}
    for i, layer in enumerate(int(x) for x in layers):
        values = halves[layer]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        row = {"split_half_cosine": statistics.fmean(values), "split_half_sd": sd,
               "gap_norm": float(raw.vectors[layer].norm())}  # fmt: skip
        row |= delta_stats(deltas_pos[:, i], aggregate)
        if deltas_neg is not None and len(deltas_pos) >= 3:
            row |= contrast_stats(deltas_pos[:, i], deltas_neg[:, i])
        if layer in against:
            row["cosine_with_reference"] = against[layer]
        out[layer] = row
    return out


def markdown(diagnostics: dict[int, dict[str, float]], title: str) -> str:
    keys = list(next(iter(diagnostics.values())))
    lines = [f"**{title}**", "", "| layer | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {layer} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for layer, row in diagnostics.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    from steering.writer import load_deltas

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("deltas", help="a <vector>.deltas.safetensors file written by SteeringModule")
    p.add_argument("--k", type=int, default=None, help="which k of the file (default: the smallest)")
    p.add_argument("--against", default=None, help="a steering vector (.safetensors) to compare with, e.g. CAA's")
    p.add_argument(
        "--aggregate",
        default=None,
        help="build the vector with this aggregate instead of the file's "
        "(pca | pca_uncentred | mean; a method that forces one keeps it)",
    )
    p.add_argument("--mode", default=None, help="both | pos instead of the file's (a method that forces one keeps it)")
    p.add_argument(
        "--unit-deltas",
        action="store_true",
        help="scale every delta to unit norm first (a vector of "
        "directions only: what is left when the size of each masking effect is taken out)",
    )
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the diagnostics here")
    args = p.parse_args(argv)
    for name, value, alias in (("--aggregate", args.aggregate, Aggregate), ("--mode", args.mode, Mode)):
        if value is not None:
            check_choice(name, value, alias)
    layers, deltas, meta = load_deltas(args.deltas)
    k = args.k if args.k is not None else min(deltas)
    if k not in deltas:
        p.error(f"--k {k} is not in {args.deltas}: it holds k = {sorted(deltas)}")
    pos, neg = deltas[k]
    pos, neg = pos.flatten(0, 1), None if neg is None else neg.flatten(0, 1)  # (N·R, L, d)
    if args.unit_deltas:
        pos, neg = unit_rows(pos), None if neg is None else unit_rows(neg)
    aggregate, mode = args.aggregate or meta.get("aggregate", "pca"), args.mode or meta.get("mode", "both")
    if meta.get("method"):  # the file records the caller's settings; a method may force its own (CAA: mean, pos)
        aggregate, mode = get_method(meta["method"]).settings(aggregate, mode)
    if neg is None:
        mode = "pos"
    reference = SteeringVector.load(args.against) if args.against else None
    out = vector_diagnostics(pos, neg, layers, aggregate, mode, reference, args.repeats, args.seed)
    unit = ", unit deltas" if args.unit_deltas else ""
    print(markdown(out, f"{meta.get('method', '?')} (k={k}, {aggregate}, {mode}{unit}), {len(pos)} deltas"))
    if args.json:
        from lmcore.io import atomic_write_json

        atomic_write_json(args.json, {str(layer): row for layer, row in out.items()}, indent=1)
    return out


if __name__ == "__main__":
    main()
