"""Aggregation (oriented PCA, mean, mode both), SteeringVector save/load and compatibility, GGUF export."""

from __future__ import annotations

import pytest
import torch

from steering import SteeringVector, aggregate_deltas, build_steering_vector, export_gguf, load_gguf
from tests.tiny_lm import tiny_causal_lm


def _deltas(n=12, d=16, seed=0, shift=3.0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    coef = shift + torch.randn(n, 1, generator=g)
    return coef * direction + 0.1 * torch.randn(n, d, generator=g), direction


def test_pca_is_unit_norm_and_oriented_toward_mean():
    deltas, direction = _deltas()
    for data in (deltas, -deltas):  # whatever the SVD sign, the result points along the mean
        v = aggregate_deltas(data, "pca")
        assert v.norm() == pytest.approx(1.0, abs=1e-5)
        assert torch.dot(v, data.mean(0)) > 0
    v = aggregate_deltas(deltas, "pca")
    assert abs(torch.nn.functional.cosine_similarity(v, direction, dim=0)) > 0.99
    assert torch.dot(aggregate_deltas(deltas, "pca_uncentred"), deltas.mean(0)) > 0
    torch.testing.assert_close(aggregate_deltas(deltas, "mean"), deltas.mean(0))


def test_pca_single_row_falls_back_to_mean_direction():
    row = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(aggregate_deltas(row, "pca"), torch.tensor([0.6, 0.8]))


def test_mode_both_equals_hand_computation():
    pos, _ = _deltas(seed=1)
    neg, _ = _deltas(seed=2)
    dp, dn = torch.stack([pos, 2 * pos], 1), torch.stack([neg, neg + 1], 1)  # (N, L=2, d)
    vec = build_steering_vector(dp, dn, [3, 5], aggregate="pca", mode="both")
    for i, layer in enumerate([3, 5]):
        expected = aggregate_deltas(dp[:, i], "pca") - aggregate_deltas(dn[:, i], "pca")
        torch.testing.assert_close(vec.vectors[layer], expected)
    pos_only = build_steering_vector(dp, None, [3, 5], aggregate="mean", mode="pos")
    torch.testing.assert_close(pos_only.vectors[5], dp[:, 1].mean(0))


def test_bad_aggregate_mode_and_shapes():
    dp, _ = _deltas()
    with pytest.raises(ValueError, match="aggregate 'median' is not one of"):
        aggregate_deltas(dp, "median")
    with pytest.raises(ValueError, match="mode 'neg' is not one of"):
        build_steering_vector(dp[:, None], dp[:, None], [0], mode="neg")
    with pytest.raises(ValueError, match="needs deltas_neg"):
        build_steering_vector(dp[:, None], None, [0], mode="both")
    with pytest.raises(ValueError, match="at least one layer"):
        SteeringVector({})


def test_safetensors_round_trip_and_compatibility(tmp_path):
    model = tiny_causal_lm("llama", layers=3)
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)}, {"num_layers": 3, "objective": "sum", "k": 10})
    path = vec.save(tmp_path / "v.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    back = SteeringVector.load(path, model)
    assert back.metadata == vec.metadata and back.layers == [1, 2]
    for layer in vec.layers:
        assert torch.equal(back.vectors[layer], vec.vectors[layer])
    with pytest.raises(ValueError, match="hidden size 16, but .* has hidden size 32"):
        back.check_compatible(tiny_causal_lm("llama").__class__(_wider_config(model)))
    with pytest.raises(ValueError, match="fit on a model with 3 layers, but LlamaForCausalLM has 2"):
        back.check_compatible(tiny_causal_lm("llama", layers=2))
    with pytest.raises(ValueError, match=r"layers \[5\] are out of range"):
        SteeringVector({5: torch.randn(16)}).check_compatible(model)
    (tmp_path / "other.safetensors").write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - an empty file is not a safetensors file
        SteeringVector.load(tmp_path / "other.safetensors")


def _wider_config(model):
    config = model.config.__class__(**{**model.config.to_dict(), "hidden_size": 32, "intermediate_size": 64})
    return config


def test_gguf_export_round_trip(tmp_path):
    pytest.importorskip("gguf")
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)})
    path = export_gguf(vec, tmp_path / "v.gguf", model_hint="llama", alpha=2.0)
    back = load_gguf(path)
    assert back.layers == [1, 2] and back.metadata["model_hint"] == "llama"
    torch.testing.assert_close(back.vectors[2], 2.0 * vec.vectors[2])
    with pytest.raises(ValueError, match="layer 0"):
        export_gguf(SteeringVector({0: torch.randn(16)}), tmp_path / "bad.gguf")
