"""The IG convergence gate and the occlusion attribution option: the gate drops exactly the rows above the bound and
says so; library (``fit_vector``) and Lightning (``SteeringModule`` predict) give the same vector and record for both
new options; bad settings are named."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import lightning as L
import pytest
import torch

from steering import GrainsConfig, SteeringVector, extract_deltas, fit_vector
from steering.completeness_gate import apply_gate, completeness_gate, gate_record
from steering.data import SteeringDataModule
from steering.fitting import example_deltas
from steering.loading import load_model_and_tokenizer
from steering.module import SteeringModule
from steering.writer import deltas_path, load_deltas
from tests.tiny_lm import tiny_pairs

GRAINS = GrainsConfig(top_k=2, ig_steps=2, internal_batch_size=4)


@pytest.mark.parametrize("threshold", [0.05, 0.5, 1.0, 3.0])
def test_the_gate_drops_exactly_the_rows_above_the_bound(threshold):
    errors = torch.tensor([0.0, -0.4, 0.5, 2.0, -3.5, 1e-9, float("nan"), float("inf")], dtype=torch.float64)
    kept = completeness_gate(errors, threshold)
    expected = [abs(e) <= threshold for e in errors.tolist()]  # NaN / inf compare False: dropped
    assert kept.tolist() == expected
    record = gate_record(errors, kept, threshold, indices=range(10, 18))
    assert record["n_dropped"] == sum(not e for e in expected) == record["n_checked"] - record["n_kept"]
    assert record["dropped_indices"] == [10 + i for i, e in enumerate(expected) if not e]
    assert all(d is None or abs(d) > threshold for d in record["dropped_errors"])
    assert completeness_gate(errors, None).all()  # no bound: every example stays


def test_a_gate_that_drops_everything_or_a_bad_bound_is_named():
    with pytest.raises(ValueError, match="all 2 examples exceed it"):
        apply_gate(torch.tensor([1.0, -2.0]), 0.5, [0, 1])
    assert apply_gate(None, 0.5, [0]) == (None, None) and apply_gate(torch.tensor([9.0]), None, [0]) == (None, None)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            GrainsConfig(max_completeness_error=bad)


def test_bad_option_combinations_are_named():
    with pytest.raises(ValueError, match=r"attribution 'shap' is not one of \('ig', 'occlusion'\)"):
        GrainsConfig(attribution="shap")
    with pytest.raises(ValueError, match="attribution 'occlusion' has none"):
        GrainsConfig(attribution="occlusion", max_completeness_error=1.0)
    with pytest.raises(ValueError, match="needs check_completeness=True"):
        GrainsConfig(max_completeness_error=1.0, check_completeness=False)
    with pytest.raises(ValueError, match="occlusion' scores input tokens only"):
        GrainsConfig(attribution="occlusion", include_response=True)
    with pytest.raises(ValueError, match="ig_method 'simpson' is not one of"):
        GrainsConfig(ig_method="simpson")


def _errors(model, tok, pairs, config) -> torch.Tensor:
    return example_deltas(model, tok, pairs, "grains", [1], config, [config.top_k]).errors


def test_library_gate_drops_the_examples_above_the_bound_and_records_them(model_tok):
    model, tok = model_tok
    pairs = tiny_pairs()
    errors = _errors(model, tok, pairs, GRAINS)
    assert errors.shape == (3,) and torch.isfinite(errors).all()
    bound = float(errors.abs().sort().values[1:].mean())  # between the second and third largest: drops one
    config = replace(GRAINS, max_completeness_error=bound)
    with pytest.warns(UserWarning, match=r"dropped 1 of 3 examples"):
        vec = fit_vector(model, tok, pairs, "grains", [1, 2], config)
    dropped = int(errors.abs().argmax())
    gate = vec.metadata["completeness_gate"]
    assert gate["n_dropped"] == 1 and gate["dropped_indices"] == [dropped] and gate["n_kept"] == 2
    kept_pairs = [p for i, p in enumerate(pairs) if i != dropped]
    ref = fit_vector(model, tok, kept_pairs, "grains", [1, 2], GRAINS)  # the same vector as without that example
    for layer in (1, 2):
        torch.testing.assert_close(vec.vectors[layer], ref.vectors[layer], atol=1e-6, rtol=1e-5)
    ex = extract_deltas(model, tok, pairs, [1, 2], config)  # the Extraction applies the same gate
    assert ex.kept.tolist() == [i != dropped for i in range(3)]
    torch.testing.assert_close(ex.to_vector().vectors[1], extract_deltas(model, tok, kept_pairs, [1, 2], GRAINS)
                               .to_vector().vectors[1], atol=1e-6, rtol=1e-5)  # fmt: skip


def test_default_records_nothing_new_and_occlusion_needs_no_gradients(model_tok):
    model, tok = model_tok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vec = fit_vector(model, tok, tiny_pairs(), "grains", [1], GRAINS)
    assert not [w for w in caught if "completeness" in str(w.message)]
    assert "completeness_gate" not in vec.metadata and vec.metadata["attribution"] == "ig"
    config = replace(GRAINS, attribution="occlusion")
    with torch.no_grad():  # IG would fail here; occlusion runs forwards only
        ex = extract_deltas(model, tok, tiny_pairs(), [1], config)
    a = ex.attributions[0]
    assert a.completeness_error is None and bool((a.scores[0] == 0) & (a.scores[-1] == 0))  # not candidates
    assert all(bool((a.scores[p] > 0).all()) for a, p in zip(ex.attributions, ex.top_pos))
    assert all(bool((a.scores[q] < 0).all()) for a, q in zip(ex.attributions, ex.top_neg))


# ---- library == Lightning ----------------------------------------------------------------------------------------
def _lightning_vector(tiny_dir, pairs_file, tmp_path, grains: GrainsConfig) -> tuple[SteeringVector, list]:
    vec_path = tmp_path / "v.safetensors"
    dm = SteeringDataModule(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(pairs_file)},
                            n_steer=6, n_dev=2, n_test=2, batch_size=4, eval_batch_size=2)  # fmt: skip
    module = SteeringModule(model_path=str(tiny_dir), layers=[1, 2], grains=grains, vector_path=str(vec_path))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.predict(module, datamodule=dm)
    return SteeringVector.load(vec_path), [ex.to_pair() for ex in dm.splits["steer"]]


@pytest.mark.parametrize("option", ["occlusion", "gate"])
def test_library_equals_lightning_for_the_new_options(tiny_dir, pairs_file, tmp_path, option):
    model, tok = load_model_and_tokenizer(str(tiny_dir), "float32")
    grains = replace(GRAINS, attribution="occlusion") if option == "occlusion" else GRAINS
    if option == "gate":  # a bound that drops the examples with the two largest errors of the steering split
        dm = SteeringDataModule(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(pairs_file)},
                                n_steer=6, n_dev=2, n_test=2)  # fmt: skip
        dm.setup()
        errors = _errors(model, tok, [ex.to_pair() for ex in dm.splits["steer"]], GRAINS).abs().sort().values
        grains = replace(GRAINS, max_completeness_error=float(errors[-3:-1].mean()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the gate's (and Lightning's) warnings
        lightning, pairs = _lightning_vector(tiny_dir, pairs_file, tmp_path, grains)
        library = fit_vector(model, tok, pairs, "grains", [1, 2], grains)
    assert lightning.layers == library.layers == [1, 2]
    for layer in (1, 2):
        torch.testing.assert_close(lightning.vectors[layer], library.vectors[layer], atol=1e-5, rtol=1e-4)
    for key in ("attribution", "max_completeness_error", "effective_top_k", "completeness_gate"):
        assert lightning.metadata.get(key) == library.metadata.get(key), key
    if option == "gate":
        gate = lightning.metadata["completeness_gate"]
        assert gate["n_dropped"] == 2 and gate["n_kept"] == 4 and len(gate["dropped_indices"]) == 2
        assert lightning.metadata["ig_completeness_mean_abs_error"] == pytest.approx(
            library.metadata["ig_completeness_mean_abs_error"], rel=1e-6)  # fmt: skip
        index = load_deltas(deltas_path(tmp_path / "v.safetensors"))[1][2][0].shape[0]
        assert index == 4  # the deltas file holds the kept examples only (what a sweep refits)
    else:
        assert "completeness_gate" not in lightning.metadata and lightning.metadata["attribution"] == "occlusion"


def test_a_resumed_predict_keeps_the_gate_record(tiny_dir, pairs_file, tmp_path, monkeypatch):
    """The per-example errors travel in the saved parts: a predict killed after its first batch and rerun gives the
    vector and gate record of an uninterrupted run."""
    model, tok = load_model_and_tokenizer(str(tiny_dir), "float32")
    dm = SteeringDataModule(model_path=str(tiny_dir), task="pairs_file", task_args={"path": str(pairs_file)},
                            n_steer=6, n_dev=2, n_test=2)  # fmt: skip
    dm.setup()
    errors = _errors(model, tok, [ex.to_pair() for ex in dm.splits["steer"]], GRAINS).abs().sort().values
    grains = replace(GRAINS, max_completeness_error=float(errors[-2:].mean()))  # drops one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        whole, _ = _lightning_vector(tiny_dir, pairs_file, tmp_path / "whole", grains)
        import steering.module as module

        real, calls = module.example_deltas, []

        def killed_on_second(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("killed")
            return real(*args, **kwargs)

        monkeypatch.setattr("steering.module.example_deltas", killed_on_second)
        with pytest.raises(RuntimeError, match="killed"):
            _lightning_vector(tiny_dir, pairs_file, tmp_path / "resumed", grains)
        calls.clear()
        monkeypatch.setattr("steering.module.example_deltas", lambda *a, **k: calls.append(1) or real(*a, **k))
        resumed, _ = _lightning_vector(tiny_dir, pairs_file, tmp_path / "resumed", grains)
    assert len(calls) == 1  # the first batch (and its completeness errors) came from its saved part
    assert resumed.metadata["completeness_gate"] == whole.metadata["completeness_gate"]
    assert whole.metadata["completeness_gate"]["n_dropped"] == 1
    for layer in whole.layers:
        torch.testing.assert_close(resumed.vectors[layer], whole.vectors[layer], atol=1e-6, rtol=0)
