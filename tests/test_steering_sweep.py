"""Sweeps re-use one extraction; selection, plot and tables; every experiments/steer_*.yaml type-checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from steering.extract import GrainsConfig
from steering.fitting import example_deltas, vector_from_deltas
from steering.sweep import group_vector, plot_sweep, select_best, sweep, write_tables
from steering.tasks import MCExample
from steering.writer import merge_predictions, save_deltas
from tests.tiny_lm import TINY_QUESTIONS, tiny_pairs

REPO = Path(__file__).resolve().parents[1]
STEER_YAMLS = sorted((REPO / "experiments").glob("steer_*.yaml"))


def test_one_ig_pass_serves_every_k(model_tok, monkeypatch):
    import steering.extract as extract

    model, tok = model_tok
    calls = []
    real = extract.contrastive_ig_embeds
    monkeypatch.setattr(extract, "contrastive_ig_embeds", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = GrainsConfig(ig_steps=4, internal_batch_size=4)
    layers, deltas, *_ = example_deltas(model, tok, tiny_pairs(), "grains", [1, 2], cfg, [1, 2, 3], batch_size=3)
    assert len(calls) == 1 and sorted(deltas) == [1, 2, 3]  # one batch, one IG call, three k
    assert deltas[1][0].shape == (3, 1, 2, 16) and not deltas[1][0].equal(deltas[3][0])
    # the re-used attribution gives the same deltas as a fresh extraction at that k
    _, fresh, *_ = example_deltas(model, tok, tiny_pairs(), "grains", [1, 2], cfg, [3], batch_size=3)
    assert fresh[3][0].equal(deltas[3][0])


def _saved_deltas(model, tok, path: Path) -> Path:
    cfg = GrainsConfig(ig_steps=4, internal_batch_size=4)
    layers, deltas, *_ = example_deltas(model, tok, tiny_pairs(), "grains", [0, 1, 2], cfg, [1, 2], batch_size=3)
    merged = merge_predictions([{"index": list(range(3)), "layers": layers, "deltas": deltas}], expected=3)
    return save_deltas(path, merged, {"method": "grains"})


def test_sweep_grid_selection_plot_and_tables(model_tok, tmp_path):
    model, tok = model_tok
    path = _saved_deltas(model, tok, tmp_path / "d.deltas.safetensors")
    dev = [MCExample(f"q {q} a", (" " + g, " " + b), {"binary": ((0,), (1,))}, (0, 1)) for q, g, b in TINY_QUESTIONS]
    rows = sweep(model, tok, path, "grains", dev, [[1], [1, 2]], [1.0, 4.0], ks=None, batch_size=8)
    assert len(rows) == 1 + 2 * 2 * 2 and rows[0]["method"] == "base"
    assert all(0 <= r["value"] <= 1 for r in rows)
    best = select_best(rows)
    assert best["value"] == max(r["value"] for r in rows[1:])
    assert all(r["kl"] >= 0 for r in rows[1:]) and rows[1]["kl"] < rows[2]["kl"]  # α 1 then 4 on one group
    budget = sorted(r["kl"] for r in rows[1:])[1]
    capped = select_best(rows, max_kl=budget)
    assert capped["kl"] <= budget and capped["value"] == max(r["value"] for r in rows[1:] if r["kl"] <= budget)
    with pytest.raises(ValueError, match="no setting keeps the dev KL <= max_kl"):
        select_best(rows, max_kl=-1.0)
    vec = group_vector(path, "grains", best["k"], best["layers"])
    assert vec.layers == best["layers"]
    png = plot_sweep(rows, tmp_path / "sweep.png", "t", max_kl=budget)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md, csv_path = write_tables(rows, tmp_path / "sweep")
    assert md.read_text().count("\n") == len(rows) + 2 and csv_path.read_text().count("\n") == len(rows) + 1
    with pytest.raises(ValueError, match="k 7 was not extracted"):
        group_vector(path, "grains", 7, [1])


def test_group_vector_equals_vector_from_the_same_layers(model_tok, tmp_path):
    model, tok = model_tok
    path = _saved_deltas(model, tok, tmp_path / "d.deltas.safetensors")
    from steering.writer import load_deltas

    _, deltas, _ = load_deltas(path)
    pos, neg = deltas[2]
    direct = vector_from_deltas("grains", pos[:, :, [2]], neg[:, :, [2]], [2])
    assert group_vector(path, "grains", 2, [2]).vectors[2].equal(direct.vectors[2])


def test_there_are_steering_experiments():
    names = {p.name for p in STEER_YAMLS}
    assert {
        "steer_smollm2_truthfulqa.yaml",
        "steer_llama31_8b_truthfulqa.yaml",
        "steer_tiny_llava.yaml",
        "steer_llava_spavl.yaml",
        "steer_llava_mmhal.yaml",
    } <= names


@pytest.mark.parametrize("path", STEER_YAMLS, ids=lambda p: p.name)
@pytest.mark.parametrize("subcommand", ["predict", "test"])
def test_every_steering_experiment_type_checks(path, subcommand, capsys):
    from lmcore.cli import run_cli

    with pytest.raises(SystemExit) as exit_:
        run_cli([subcommand, "--config", str(path), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("steering.")


def test_a_vectors_metadata_names_the_aggregate_and_mode_it_was_built_with():
    """CAA forces (mean, pos): a caller's (pca, both), e.g. the predict config's carried in the deltas' metadata,
    must not be what its vector records."""
    pos = torch.randn(6, 1, 2, 8, generator=torch.Generator().manual_seed(0))
    carried = {"aggregate": "pca", "mode": "both", "n_examples": 99}
    vec = vector_from_deltas("caa", pos, None, [5, 7], "pca", "both", True, carried)
    assert (vec.metadata["aggregate"], vec.metadata["mode"], vec.metadata["n_examples"]) == ("mean", "pos", 6)
