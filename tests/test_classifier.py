"""Trained classifiers from user files: weights-only reads, content hashes."""

import os
import pickle

import pytest
import torch

from cap_lightning.classifier import inspect_classifier, weights_sha256


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_in_a_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as fh:
        pickle.dump({"hyper_parameters": {"num_labels": 2, "model_path": "minilm"}, "x": _Payload(marker)}, fh)
    with pytest.raises(ValueError, match="evil.ckpt: refused to load"):
        inspect_classifier(str(evil), role="victim")
    assert not marker.exists()


def test_weights_hash_is_content_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        torch.save({"w": torch.ones(2)}, folder / "model.bin")
        (folder / "config.json").write_text("{}")
    assert weights_sha256(a) == weights_sha256(b) is not None
    (b / "config.json").write_text('{"x": 1}')
    assert weights_sha256(a) != weights_sha256(b)
    assert weights_sha256(tmp_path / "missing") is None
