"""The experiment grid: committed YAMLs are the grid's output; composition is a plain recursive merge."""

import pytest

from cap_lightning.experiments import compose, grid, merge, render, stale
from tests.test_cli import REPO


def test_committed_yamls_are_the_grid():
    assert stale(REPO / "experiments") == []


def test_every_grid_cell_renders_a_prior_block_unless_baseline():
    for dataset, prior, setting in grid():
        config = compose(dataset, prior, setting)
        callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
        has_prior = "cap_lightning.PriorCacheCallback" in callbacks
        assert has_prior == (prior != "baseline") == (config["model"]["init_args"]["prior_weight"] > 0)
        assert config["data"]["init_args"]["dataset"] == dataset
        assert render(dataset, prior, setting).startswith("# lightning fit --config experiments/")


def test_overrides_merge_last_and_leave_the_rest():
    config = compose("banking77", "ig", "fs10", {"model": {"init_args": {"lr": 3e-4}}, "seed_everything": 2})
    assert config["model"]["init_args"]["lr"] == 3e-4 and config["seed_everything"] == 2
    assert config["model"]["init_args"]["prior_weight"] == 0.1 and config["data"]["init_args"]["shots_per_class"] == 10
    assert merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


@pytest.mark.parametrize("cell", [("imdb", "ig", "full"), ("sst2", "shap", "full"), ("sst2", "ig", "fs3")])
def test_unknown_cells_are_named(cell):
    with pytest.raises(ValueError, match="is not one of"):
        compose(*cell)
