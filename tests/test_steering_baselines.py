"""Baselines on the shared interface: CAA, RepE-style PCA, GrAInS random-k and all-token controls."""

from __future__ import annotations

import pytest
import torch

from steering import (
    GrainsConfig,
    SteeringVector,
    capture_layer_outputs,
    encode_pair,
    fit_all_tokens_vector,
    fit_caa_vector,
    fit_pca_vector,
    fit_random_k_vector,
    steer,
)
from tests.tiny_lm import tiny_pairs

PAIRS = tiny_pairs()


def test_caa_is_the_mean_paired_difference(model_tok):
    model, tok = model_tok
    vec = fit_caa_vector(model, tok, PAIRS, layers=[1], unit_norm=False)
    diffs = []
    with torch.no_grad(), capture_layer_outputs(model, [1]) as store:
        for p in PAIRS:
            x, yp, yn = encode_pair(tok, p)
            model(torch.cat([x, yp])[None])
            hp = store[1][0, -1].clone()
            model(torch.cat([x, yn])[None])
            diffs.append(hp - store[1][0, -1])
    torch.testing.assert_close(vec.vectors[1], torch.stack(diffs).mean(0), atol=1e-5, rtol=1e-4)
    assert vec.metadata["method"] == "caa"


def test_pca_baseline_is_unit_and_oriented(model_tok):
    model, tok = model_tok
    caa = fit_caa_vector(model, tok, PAIRS, layers=[2])
    pca = fit_pca_vector(model, tok, PAIRS, layers=[2])
    assert pca.vectors[2].norm() == pytest.approx(1.0, abs=1e-5)
    assert torch.dot(pca.vectors[2], caa.vectors[2]) > 0
    with pytest.raises(ValueError, match="aggregate 'mean' is not one of"):
        fit_pca_vector(model, tok, PAIRS, aggregate="mean")


def test_controls_share_the_grains_interface(model_tok):
    model, tok = model_tok
    cfg = GrainsConfig(top_k=2, ig_steps=4)
    rand = fit_random_k_vector(model, tok, PAIRS, layers=[2], config=cfg, seed=3)
    allv = fit_all_tokens_vector(model, tok, PAIRS, layers=[2], config=cfg)
    assert rand.metadata["selection"] == "random" and rand.metadata["seed"] == 3
    assert allv.metadata["selection"] == "all" and allv.metadata["mode"] == "pos"
    for vec in (rand, allv):
        assert isinstance(vec, SteeringVector)
        with steer(model, vec, alpha=1.0):
            model(torch.tensor([[2, 9, 8]]))
    with pytest.raises(ValueError, match="pairs is empty"):
        fit_caa_vector(model, tok, [])
