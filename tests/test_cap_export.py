"""``python -m cap_lightning.export``: a CapModule checkpoint → a plain HF classifier folder that lmcore loads with
the same logits; bad paths fail with the path named, before any weights load."""

from __future__ import annotations

import re

import pytest
import torch

from cap_lightning.export import export_classifier, main
from cap_lightning.module import CapModule
from tests.helpers import quiet_trainer, tiny_datamodule

TEXTS = ["a good movie", "the film was awful and boring", "i love it", "not very fun"]


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    from tests.tiny import save_tiny_classifier

    folder = tmp_path_factory.mktemp("export")
    model_dir = save_tiny_classifier(folder / "base", num_labels=2)
    dm = tiny_datamodule(model_dir)
    module = CapModule(model_path=str(model_dir), prior_weight=0.0, lr=1e-2, faithfulness=False)
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(module, datamodule=dm)
    ckpt = folder / "best.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=False)
    return ckpt, module.model.eval(), model_dir


def _logits(model, tokenizer) -> torch.Tensor:
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def test_exported_folder_gives_the_modules_logits_and_label_names(trained_ckpt, tmp_path):
    from lmcore.models import load_classifier, load_tokenizer

    ckpt, model, model_dir = trained_ckpt
    out = export_classifier(ckpt, tmp_path / "judge")
    loaded = load_classifier(str(out), 2).eval()
    tok = load_tokenizer(str(out))
    assert torch.allclose(_logits(loaded, tok), _logits(model, load_tokenizer(str(model_dir))), atol=1e-6)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}  # from the data module's custom label_names
    assert loaded.config.label2id == {"negative": 0, "positive": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_label_names_argument_wins_and_overwrite_replaces(trained_ckpt, tmp_path):
    from transformers import AutoConfig

    ckpt, _, _ = trained_ckpt
    out = tmp_path / "judge"
    main(["--ckpt", str(ckpt), "--out", str(out)])
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        export_classifier(ckpt, out, ["neg", "pos"])
    export_classifier(ckpt, out, ["neg", "pos"], overwrite=True)
    assert AutoConfig.from_pretrained(out).id2label == {0: "neg", 1: "pos"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judge"]


def test_bad_paths_and_labels_fail_naming_them(trained_ckpt, tmp_path, monkeypatch):
    import cap_lightning.module as cap_module

    def no_weights(*a, **k):
        raise AssertionError("weights were loaded before the check")

    monkeypatch.setattr(cap_module.CapModule, "load_from_checkpoint", no_weights)
    ckpt, _, _ = trained_ckpt
    missing = tmp_path / "nope" / "best.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        export_classifier(missing, tmp_path / "out")
    with pytest.raises(ValueError, match="is not a file"):
        export_classifier(tmp_path, tmp_path / "out")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, other)
    with pytest.raises(ValueError, match="other.ckpt: not a CapModule checkpoint"):
        export_classifier(other, tmp_path / "out")
    with pytest.raises(ValueError, match="3 label names"):
        export_classifier(ckpt, tmp_path / "out", ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        export_classifier(ckpt, tmp_path / "out", ["a", "a"])
    with pytest.raises(ValueError, match="holds the checkpoint"):
        export_classifier(ckpt, ckpt.parent, overwrite=True)
    assert not (tmp_path / "out").exists()


def test_command_line_names_a_bad_path_in_one_line(tmp_path, capsys):
    missing = tmp_path / "gone.ckpt"
    with pytest.raises(SystemExit) as exit_:
        main(["--ckpt", str(missing), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and str(missing) in capsys.readouterr().err


def test_label_names_from_checkpoint_metadata():
    from cap_lightning.export import checkpoint_label_names

    assert checkpoint_label_names({"datamodule_hyper_parameters": {"dataset": "sst2"}}) == ["negative", "positive"]
    custom = {"dataset": "custom", "custom": {"label_names": ["x", "y", "z"]}}
    assert checkpoint_label_names({"datamodule_hyper_parameters": custom}) == ["x", "y", "z"]
    assert checkpoint_label_names({}) is None
