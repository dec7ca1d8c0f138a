"""Aggregation (oriented PCA, mean, mode both), SteeringVector save/load and compatibility, GGUF export."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_vectors_are_refused_on_save_and_load(tmp_path, bad):
    from safetensors.torch import save_file

    v = torch.ones(16)
    v[3] = bad
    vec = SteeringVector({1: torch.ones(16), 2: v}, {"num_layers": 3})
    with pytest.raises(ValueError, match=r"layer 2 .*non-finite"):
        vec.save(tmp_path / "v.safetensors")
    assert not (tmp_path / "v.safetensors").exists()
    # a file written by other means (or edited) is refused when read
    path = tmp_path / "nan.safetensors"
    save_file({"layer.1": torch.ones(16), "layer.2": v}, str(path),
              metadata={"format": "cap_lightning.steering.v1", "metadata": "{}"})  # fmt: skip
    with pytest.raises(ValueError, match=rf"{path.name}.*layer 2 .*non-finite"):
        SteeringVector.load(path)


class _Payload:
    """Creates a marker file when unpickled: proves a pickle given as a vector is never executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch_save"])
def test_pickle_given_as_a_vector_is_named_and_never_executed(tmp_path, writer):
    import pickle

    from steering.writer import load_deltas

    marker = tmp_path / "executed"
    path = tmp_path / "vector.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"layer.1": torch.ones(16), "x": _Payload(marker)}, path)
    for load in (SteeringVector.load, load_deltas):
        with pytest.raises(ValueError, match=rf"{path.name} is not a safetensors file.*pickle.* not accepted"):
            load(path)
    assert not marker.exists()


def test_identical_results_are_byte_identical_files(tmp_path):
    """The safetensors header (metadata included) is written with sorted keys, so files depend only on content.

    safetensors itself writes ``__metadata__`` from a hash map, whose order changes from process to process.
    """
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from steering import SteeringVector\n"
        "from steering.writer import save_deltas\n"
        "out = sys.argv[1]\n"
        "v = SteeringVector({1: torch.arange(16.0), 2: torch.ones(16)}, {'b': 1, 'a': [2, 3], 'z': 'x'})\n"
        "v.save(out + '.vector.safetensors')\n"
        "merged = {'index': torch.arange(3), 'layers': [1, 2],\n"
        "          'deltas': {2: (torch.ones(3, 1, 2, 4), torch.zeros(3, 1, 2, 4)),\n"
        "                     3: (torch.ones(3, 1, 2, 4), None)}}\n"
        "save_deltas(Path(out + '.deltas.safetensors'), merged, {'y': 1, 'c': 2})\n"
    )
    repo = Path(__file__).resolve().parents[1]
    outs = []
    for i in range(4):
        out = str(tmp_path / f"run{i}")
        subprocess.run([sys.executable, "-c", script, out], check=True, cwd=repo, env={"PYTHONPATH": str(repo)})
        outs.append(out)
    for suffix in (".vector.safetensors", ".deltas.safetensors"):
        files = [Path(o + suffix).read_bytes() for o in outs]
        assert all(f == files[0] for f in files[1:]), suffix
        n = int.from_bytes(files[0][:8], "little")
        header = json.loads(files[0][8 : 8 + n])
        assert list(header) == sorted(header) and list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert SteeringVector.load(outs[0] + ".vector.safetensors").metadata == {"b": 1, "a": [2, 3], "z": "x"}


def test_every_header_length_reads_as_safetensors(tmp_path):
    """A header length whose first byte is 0x80 (a pickle opcode) is still a safetensors file."""
    first_bytes = set()
    for n in range(0, 264, 8):  # header lengths are multiples of 8: every residue mod 256 once
        vec = SteeringVector({1: torch.ones(16)}, {"pad": "x" * n})
        path = vec.save(tmp_path / f"v{n}.safetensors")
        first_bytes.add(path.read_bytes()[0])
        assert SteeringVector.load(path).metadata["pad"] == "x" * n
    assert 0x80 in first_bytes


def test_tokenizer_hash_is_checked_when_a_tokenizer_is_given(tmp_path):
    from steering.pairs import tokenizer_hash
    from tests.tiny_lm import tiny_lm_tokenizer

    tok = tiny_lm_tokenizer()
    good = SteeringVector({1: torch.ones(16)}, {"tokenizer_hash": tokenizer_hash(tok)}).save(tmp_path / "a.safetensors")
    assert SteeringVector.load(good, tokenizer=tok).layers == [1]
    other = SteeringVector({1: torch.ones(16)}, {"tokenizer_hash": "0123456789abcdef"}).save(tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match=rf"{other.name} was fit with tokenizer hash 0123456789abcdef.*"
                                         rf"{tokenizer_hash(tok)}.*re-run predict"):  # fmt: skip
        SteeringVector.load(other, tokenizer=tok)
    assert SteeringVector.load(other).layers == [1]  # without a tokenizer there is nothing to compare
