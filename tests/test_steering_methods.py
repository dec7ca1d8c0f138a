"""One method registry: the library ``fit_*`` functions and the Lightning path give the same vector per method."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from steering import (
    GrainsConfig,
    SteeringVector,
    fit_all_tokens_vector,
    fit_caa_vector,
    fit_pca_vector,
    fit_random_k_vector,
    fit_steering_vector,
)
from steering.data import SteeringDataModule
from steering.module import SteeringModule
from tests.tiny_lm import tiny_pairs

CFG = GrainsConfig(top_k=2, ig_steps=4, internal_batch_size=4)
LIBRARY = {
    "grains": lambda m, t, p, layers: fit_steering_vector(m, t, p, layers, CFG),
    "random_k": lambda m, t, p, layers: fit_random_k_vector(m, t, p, layers, config=CFG, seed=CFG.seed),
    "all_tokens": lambda m, t, p, layers: fit_all_tokens_vector(m, t, p, layers, config=CFG),
    "caa": lambda m, t, p, layers: fit_caa_vector(m, t, p, layers),
    "pca": lambda m, t, p, layers: fit_pca_vector(m, t, p, layers),
}


@pytest.mark.parametrize("method", sorted(LIBRARY))
def test_library_and_lightning_paths_give_the_same_vector(tiny_dir, pairs_file, tmp_path, method):
    """Same pairs, layers and settings: one definition of each method (and so one meaning of α)."""
    dm = SteeringDataModule(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(pairs_file)},
                            n_steer=5, n_dev=2, n_test=5, batch_size=5)  # fmt: skip
    module = SteeringModule(
        model_path=str(tiny_dir), method=method, layers=[1, 2], grains=CFG, vector_path=str(tmp_path / "v.safetensors")
    )
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.predict(module, datamodule=dm)
    lightning = SteeringVector.load(tmp_path / "v.safetensors")
    pairs = [ex.to_pair() for ex in dm.splits["steer"]]
    library = LIBRARY[method](module.hf_model, module.tokenizer, pairs, [1, 2])
    assert library.layers == lightning.layers == [1, 2]
    for layer in lightning.layers:
        assert float(library.vectors[layer].norm()) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(library.vectors[layer], lightning.vectors[layer], atol=1e-5, rtol=0)
    assert library.metadata["method"] == lightning.metadata["method"] == method
    assert library.metadata["mode"] == lightning.metadata["mode"]
    assert library.metadata["aggregate"] == lightning.metadata["aggregate"]
    assert library.metadata.get("effective_top_k") == lightning.metadata.get("effective_top_k")  # the k actually used
    if method in ("grains", "random_k"):
        assert lightning.metadata["effective_top_k"]["requested"] == CFG.top_k


def test_caa_is_unit_norm_by_default_in_the_direction_of_the_mean_difference(model_tok):
    model, tok = model_tok
    raw = fit_caa_vector(model, tok, tiny_pairs(), layers=[1, 2], unit_norm=False)
    unit = fit_caa_vector(model, tok, tiny_pairs(), layers=[1, 2])
    for layer in (1, 2):
        assert float(unit.vectors[layer].norm()) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(unit.vectors[layer], raw.vectors[layer] / raw.vectors[layer].norm())
    assert unit.metadata["unit_norm"] is True and raw.metadata.get("unit_norm") is not True


def test_the_registry_is_the_one_list_of_methods():
    from typing import get_args, get_type_hints

    from steering.methods import METHODS, MethodName, get_method, method_for_selection

    assert get_args(MethodName) == tuple(METHODS)
    assert get_type_hints(SteeringModule.__init__)["method"] == MethodName
    for name, spec in METHODS.items():
        assert spec.name == name and spec.deltas in ("masked", "paired", "random")
        assert (spec.selection is None) == (spec.deltas != "masked")  # only masked deltas select tokens
        assert spec.uses_k <= (spec.deltas == "masked")
        if spec.selection is not None:
            assert method_for_selection(spec.selection) is spec
            assert spec.configure(CFG).selection == spec.selection
    assert get_method("all_tokens").settings("pca", "both") == ("pca", "pos")  # P = Q: u⁺ − u⁻ would be 0
    assert get_method("caa").settings("pca", "both") == ("mean", "pos")
    with pytest.raises(ValueError, match=r"method 'ica' is not one of \('grains'"):
        get_method("ica")
    with pytest.raises(ValueError, match="aggregate 'mean' is not one of .* for method 'pca'"):
        SteeringModule(method="pca", aggregate="mean")


def test_random_direction_is_a_seeded_unit_direction_keyed_on_the_example_index(model_tok):
    """The random-direction control: same norm as every unit vector, no model signal, the same draw whatever the
    batching (keyed on dataset indices), and a library vector equal to the mean of the per-example draws."""
    from steering.fitting import example_deltas, fit_vector, random_deltas

    model, tok = model_tok
    pairs = tiny_pairs()
    vec = fit_vector(model, tok, pairs, "random_direction", layers=[1, 2])
    for layer in (1, 2):
        assert float(vec.vectors[layer].norm()) == pytest.approx(1.0, abs=1e-5)
    whole = example_deltas(model, tok, pairs, "random_direction", [1, 2], CFG, [10], indices=[5, 6, 7][: len(pairs)])
    part = example_deltas(
        model, tok, pairs[1:], "random_direction", [1, 2], CFG, [10], indices=[6, 7][: len(pairs) - 1]
    )
    torch.testing.assert_close(whole.deltas[10][0][1:], part.deltas[10][0])
    torch.testing.assert_close(whole.deltas[10][0][0, 0], random_deltas(CFG.seed + 5, 2, model.config.hidden_size))
    mean = torch.stack([random_deltas(CFG.seed + i, 2, model.config.hidden_size) for i in range(len(pairs))]).mean(0)
    torch.testing.assert_close(vec.vectors[2], mean[1] / mean[1].norm())
    assert vec.metadata["method"] == "random_direction"
