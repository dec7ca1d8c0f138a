"""Vector diagnostics: split-half cosine separates a stable direction from noise; PC1 share and common component;
cosine with a reference; the command over a saved deltas file."""

import statistics

import pytest
import torch

from steering.diagnostics import delta_stats, layer_cosines, main, split_half_cosines, vector_diagnostics
from steering.vectors import SteeringVector
from steering.writer import save_deltas


def split_half_cosine(*args, **kwargs) -> dict[int, float]:
    """Mean split-half cosine per layer (what ``vector_diagnostics`` reports)."""
    return {layer: statistics.fmean(v) for layer, v in split_half_cosines(*args, **kwargs).items()}


def _deltas(signal: float, n: int = 40, layers: int = 2, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    return signal * direction + torch.randn(n, layers, d, generator=g) / d**0.5  # (N, L, d)


@pytest.mark.parametrize("aggregate", ["mean", "pca_uncentred"])
def test_split_half_cosine_is_high_for_a_stable_direction_and_near_zero_for_noise(aggregate):
    stable = split_half_cosine(_deltas(3.0), None, [0, 1], aggregate, "pos")
    noise = split_half_cosine(_deltas(0.0), None, [0, 1], aggregate, "pos")
    assert min(stable.values()) > 0.95
    assert max(abs(v) for v in noise.values()) < 0.4


def test_delta_stats_on_rank_one_and_identical_rows():
    rank_one = torch.outer(torch.linspace(-1, 2, 10), torch.randn(8))
    assert delta_stats(rank_one, "pca_uncentred")["pc1_share"] == pytest.approx(1.0)
    same = torch.randn(8).expand(5, 8)
    assert delta_stats(same, "mean")["common_component"] == pytest.approx(1.0)
    assert delta_stats(_deltas(0.0, n=400)[:, 0], "mean")["common_component"] < 0.15


def test_layer_cosines_and_bad_input():
    v = SteeringVector({0: torch.randn(8), 3: torch.randn(8)})
    neg = SteeringVector({k: -x for k, x in v.vectors.items()})
    assert layer_cosines(v, v) == pytest.approx({0: 1.0, 3: 1.0})
    assert layer_cosines(v, neg) == pytest.approx({0: -1.0, 3: -1.0})
    with pytest.raises(ValueError, match="share no layer"):
        layer_cosines(v, SteeringVector({1: torch.randn(8)}))
    with pytest.raises(ValueError, match=">= 2 examples"):
        split_half_cosine(_deltas(1.0, n=1), None, [0, 1])


def test_vector_diagnostics_rows_and_the_command(tmp_path, capsys):
    pos, neg = _deltas(3.0, seed=1), _deltas(1.0, seed=2)
    ref = SteeringVector({5: torch.randn(64), 7: torch.randn(64)})
    rows = vector_diagnostics(pos, neg, [5, 7], "pca", "both", reference=ref, repeats=4)
    assert set(rows) == {5, 7}
    assert set(rows[5]) == {
        "split_half_cosine",
        "split_half_sd",
        "gap_norm",
        "pc1_share",
        "common_component",
        "contrast_pc1_share",
        "contrast_magnitude_corr",
        "cosine_with_reference",
    }
    path = save_deltas(tmp_path / "v.deltas.safetensors", {"index": torch.arange(40), "layers": [5, 7],
                       "deltas": {10: (pos[:, None], neg[:, None])}}, {"method": "grains", "aggregate": "pca",
                       "mode": "both"})  # fmt: skip
    ref.save(tmp_path / "caa.safetensors")
    out = main([str(path), "--against", str(tmp_path / "caa.safetensors"), "--repeats", "4",
                "--json", str(tmp_path / "d.json")])  # fmt: skip
    assert out.keys() == rows.keys()
    assert out[5]["split_half_cosine"] == pytest.approx(rows[5]["split_half_cosine"])
    assert "grains (k=10, pca, both), 40 deltas" in capsys.readouterr().out and (tmp_path / "d.json").is_file()
    with pytest.raises(SystemExit):
        main([str(path), "--k", "3"])


def test_the_command_rebuilds_a_vector_the_way_its_method_does(tmp_path, capsys):
    """A CAA deltas file records the caller's ``aggregate: pca``, but CAA forces the mean: the diagnostics must
    build CAA's vector (cosine 1 with the CAA vector itself), not a PCA of its deltas."""
    from steering.fitting import vector_from_deltas

    pos = _deltas(0.5, seed=3)
    path = save_deltas(tmp_path / "caa.deltas.safetensors", {"index": torch.arange(40), "layers": [5, 7],
                       "deltas": {0: (pos[:, None], None)}}, {"method": "caa", "aggregate": "pca",
                       "mode": "both"})  # fmt: skip
    vector_from_deltas("caa", pos, None, [5, 7], "pca", "both", True, {}).save(tmp_path / "caa.safetensors")
    out = main([str(path), "--against", str(tmp_path / "caa.safetensors"), "--repeats", "2"])
    assert [row["cosine_with_reference"] for row in out.values()] == pytest.approx([1.0, 1.0])
    assert "caa (k=0, mean, pos), 40 deltas" in capsys.readouterr().out


def test_the_command_can_rebuild_with_another_aggregate_and_checks_it(tmp_path, capsys):
    pos = _deltas(3.0, seed=4)
    path = save_deltas(tmp_path / "g.deltas.safetensors", {"index": torch.arange(40), "layers": [5, 7],
                       "deltas": {10: (pos[:, None], None)}}, {"method": "grains", "aggregate": "pca",
                       "mode": "pos"})  # fmt: skip
    out = main([str(path), "--aggregate", "mean", "--repeats", "3"])
    assert out[5]["split_half_cosine"] == pytest.approx(split_half_cosine(pos, None, [5, 7], "mean", "pos", 3)[5])
    assert "grains (k=10, mean, pos)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--aggregate 'median'"):
        main([str(path), "--aggregate", "median"])


def test_contrast_stats_see_a_magnitude_only_contrast_and_unit_rows_remove_it():
    from steering.diagnostics import contrast_stats, unit_rows

    g = torch.Generator().manual_seed(5)
    c = torch.nn.functional.normalize(torch.randn(32, generator=g), dim=0)
    size_pos, size_neg = torch.rand(60, generator=g) * 3, torch.rand(60, generator=g) * 3
    pos = size_pos[:, None] * c + 0.01 * torch.randn(60, 32, generator=g)  # both sides along c, sizes differ
    neg = size_neg[:, None] * c + 0.01 * torch.randn(60, 32, generator=g)
    stats = contrast_stats(pos, neg)
    assert stats["contrast_pc1_share"] > 0.95 and stats["contrast_magnitude_corr"] > 0.99
    unit = contrast_stats(unit_rows(pos), unit_rows(neg))
    assert unit["contrast_pc1_share"] < 0.5  # what is left is noise spread over many directions
    assert torch.allclose(unit_rows(pos).norm(dim=1), torch.ones(60)) and unit_rows(torch.zeros(2, 3)).abs().sum() == 0
    with pytest.raises(ValueError, match="one shape"):
        contrast_stats(pos, neg[:10])


def test_split_half_sd_and_the_unit_deltas_flag(tmp_path, capsys):
    pos, neg = _deltas(3.0, seed=6), _deltas(1.0, seed=7)
    rows = vector_diagnostics(pos, neg, [0, 1], "pca", "both", repeats=5)
    assert rows[0]["split_half_sd"] >= 0 and {"contrast_pc1_share", "contrast_magnitude_corr"} <= set(rows[0])
    path = save_deltas(tmp_path / "v.deltas.safetensors", {"index": torch.arange(40), "layers": [0, 1],
                       "deltas": {10: (pos[:, None], neg[:, None])}}, {"method": "grains", "aggregate": "pca",
                       "mode": "both"})  # fmt: skip
    from steering.diagnostics import unit_rows

    out = main([str(path), "--unit-deltas", "--repeats", "5"])
    expected = vector_diagnostics(unit_rows(pos), unit_rows(neg), [0, 1], "pca", "both", repeats=5)
    assert out[1]["split_half_cosine"] == pytest.approx(expected[1]["split_half_cosine"])
    assert "unit deltas" in capsys.readouterr().out
