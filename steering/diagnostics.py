"""Vector diagnostics: is a steering vector a stable direction, and how does it relate to another (e.g. CAA)?

    python -m steering.diagnostics runs/steer/.../grains.deltas.safetensors [--against caa.safetensors] [--k 10] \
        [--aggregate pca | pca_uncentred | mean] [--mode both | pos]

Design decisions (docs/grains.md §6.6):
- **Split-half cosine**: the examples are split at random into two halves (seeded, ``repeats`` times); a vector is
  built from each half exactly as the method builds it (same aggregate and mode), and the per-layer cosine of the two
  half-vectors is averaged over the splits. A direction estimated from noise gives about 0 (or a negative value when
  an orientation is decided by noise); a stable one approaches 1. CAA on the same pairs is the yardstick.
- **Gap** ``‖u⁺ − u⁻‖`` before the unit normalisation (``mode="both"``; ``‖u⁺‖`` for ``pos``): with PCA aggregates
  both terms are unit vectors, so a small gap says the P- and Q-masked deltas point the same way.
- **PC1 share**: the fraction of the δ⁺ variance (centred for ``pca``, uncentred otherwise) along the first
  principal component; **common component** ``‖mean δ‖ / rms ‖δ‖``: near 1, centring removes most of the signal.
- **Cosine with a reference** vector per layer (e.g. GrAInS against CAA).
"""

from __future__ import annotations

import argparse
import random
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


def split_half_cosine(
    deltas_pos: torch.Tensor,
    deltas_neg: torch.Tensor | None,
    layers: Sequence[int],
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    repeats: int = 20,
    seed: int = 0,
) -> dict[int, float]:
    """Mean per-layer cosine between vectors built from two random halves of the examples (deltas (N, L, d)).

    Raises:
        ValueError: fewer than 2 examples, or ``repeats`` < 1.
    """
    n = len(deltas_pos)
    if n < 2 or repeats < 1:
        raise ValueError(f"a split-half cosine needs >= 2 examples and repeats >= 1, got {n} and {repeats}")
    rng = random.Random(seed)
    sums = dict.fromkeys((int(layer) for layer in layers), 0.0)
    for _ in range(repeats):
        order = list(range(n))
        rng.shuffle(order)
        halves = [torch.tensor(order[: n // 2]), torch.tensor(order[n // 2 :])]
        a, b = (build_steering_vector(deltas_pos[h], None if deltas_neg is None else deltas_neg[h], layers, aggregate,
                                      mode) for h in halves)  # fmt: skip
        for layer, cos in layer_cosines(a, b).items():
            sums[layer] += cos / repeats
    return sums


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
    """Per layer: split-half cosine, gap ``‖u⁺ − u⁻‖`` (or ``‖u⁺‖``), δ⁺ PC1 share and common component, and the
    cosine with ``reference`` when given. Deltas (N, L, d)."""
    raw = build_steering_vector(deltas_pos, deltas_neg, layers, aggregate, mode)
    halves = split_half_cosine(deltas_pos, deltas_neg, layers, aggregate, mode, repeats, seed)
    against = layer_cosines(raw, reference) if reference is not None else {}
    out = {}
    for i, layer in enumerate(int(x) for x in layers):
        row = {"split_half_cosine": halves[layer], "gap_norm": float(raw.vectors[layer].norm())}
        row |= delta_stats(deltas_pos[:, i], aggregate)
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
    aggregate, mode = args.aggregate or meta.get("aggregate", "pca"), args.mode or meta.get("mode", "both")
    if meta.get("method"):  # the file records the caller's settings; a method may force its own (CAA: mean, pos)
        aggregate, mode = get_method(meta["method"]).settings(aggregate, mode)
    if neg is None:
        mode = "pos"
    reference = SteeringVector.load(args.against) if args.against else None
    out = vector_diagnostics(pos, neg, layers, aggregate, mode, reference, args.repeats, args.seed)
    print(markdown(out, f"{meta.get('method', '?')} (k={k}, {aggregate}, {mode}), {len(pos)} deltas"))
    if args.json:
        from lmcore.io import atomic_write_json

        atomic_write_json(args.json, {str(layer): row for layer, row in out.items()}, indent=1)
    return out


if __name__ == "__main__":
    main()
