"""SmolLM2-135M-Instruct on TruthfulQA (slow): vectors fit on 20 pairs move the held-out log-likelihood margin.

Splits are disjoint: fit = rows 0–19, test = rows 20–69 (rows 70–99 served as an offline dev split for the layer
range). The canonical vector (pca, both) is normalised per layer so α is in units of a unit direction.
"""

from __future__ import annotations

import contextlib
import csv

import pytest
import torch

from steering import ContrastivePair, GrainsConfig, SteeringVector, extract_deltas, score_responses, steer

LAYERS = list(range(12, 20))
ALPHA = 8.0


def _pairs(shared_data):
    path = shared_data / "truthfulqa" / "binary_2025" / "TruthfulQA.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return [ContrastivePair(f"Q: {r['Question']}\nA:", " " + r["Best Answer"], " " + r["Best Incorrect Answer"])
            for r in rows]  # fmt: skip


def _unit(vec: SteeringVector) -> SteeringVector:
    return SteeringVector({k: v / v.norm() for k, v in vec.vectors.items()}, vec.metadata)


@pytest.mark.slow
def test_smollm2_truthfulqa_margin_moves_with_alpha(shared_data):
    from lmcore.models import load_causal_lm, load_tokenizer

    try:
        model, tok = load_causal_lm("smollm2-135m"), load_tokenizer("smollm2-135m")
    except (ModuleNotFoundError, ValueError) as e:
        pytest.skip(f"SmolLM2 weights unavailable: {e}")
    pairs = _pairs(shared_data)
    fit, test = pairs[:20], pairs[20:70]
    ex = extract_deltas(model, tok, fit, LAYERS, GrainsConfig(top_k=10, ig_steps=10, internal_batch_size=10))

    def margin(vec: SteeringVector | None = None, alpha: float = 0.0) -> float:
        ctx = steer(model, vec, alpha) if vec is not None else contextlib.nullcontext()
        prompts = [p.prompt for p in test]
        with ctx:
            good = score_responses(model, tok, prompts, [p.preferred for p in test], batch_size=16)
            bad = score_responses(model, tok, prompts, [p.dispreferred for p in test], batch_size=16)
        return float((good - bad).mean())

    base = margin()
    vec = _unit(ex.to_vector("pca", "both"))  # canonical: oriented PC1(δ⁺) − PC1(δ⁻)
    up, down = margin(vec, ALPHA), margin(vec, -ALPHA)
    errors = ex.completeness_errors
    print(
        f"\nSmolLM2 TruthfulQA margin (mean log p(y+) - log p(y-), 50 held-out pairs), layers {LAYERS}, pca/both:"
        f"\n  base {base:.3f}   alpha=+{ALPHA}: {up:.3f}   alpha=-{ALPHA}: {down:.3f}"
        f"\n  IG completeness mean |error| (10 steps): {sum(map(abs, errors)) / len(errors):.3f}"
    )
    assert torch.isfinite(torch.tensor([base, up, down])).all()
    assert up > base > down, f"alpha > 0 must raise the margin, alpha < 0 lower it: {base=:.3f} {up=:.3f} {down=:.3f}"
