"""Every path that reads a user-supplied ``.ckpt`` loads it weights-only or refuses it: a pickle payload never runs.

Each case writes a checkpoint whose unpickling would ``touch`` a marker file, reads it through one entry point, and
checks that the marker was never created. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` flips torch's own default to the
unsafe one, so a path is only safe when it asks for ``weights_only=True`` itself.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import FIXTURES


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(folder: Path, model_path: str) -> tuple[Path, Path]:
    """A CapModule-shaped ``.ckpt`` with a pickle payload, and the marker file the payload would create."""
    marker = folder / "pwned"
    evil = folder / "evil.ckpt"
    torch.save(
        {
            "hyper_parameters": {"num_labels": 2, "model_path": model_path},
            "state_dict": {},
            "pytorch-lightning_version": "2.6.6",
            "x": _Payload(marker),
        },
        evil,
    )
    return evil, marker


def _inspect(evil: Path, model_dir: Path) -> None:
    from cap_lightning.classifier import inspect_classifier

    inspect_classifier(str(evil), role="victim")


def _load_trained(evil: Path, model_dir: Path) -> None:
    from cap_lightning.classifier import ClassifierInfo, load_trained_classifier

    load_trained_classifier(ClassifierInfo(str(evil), "ckpt", 2, str(model_dir)))


def _module_default(evil: Path, model_dir: Path) -> None:
    from cap_lightning.module import CapModule

    CapModule.load_from_checkpoint(str(evil))


def _module_unsafe_asked(evil: Path, model_dir: Path) -> None:
    from cap_lightning.module import CapModule

    CapModule.load_from_checkpoint(str(evil), weights_only=False)


def _reference(evil: Path, model_dir: Path) -> None:
    from cap_lightning.priors.reference import load_reference

    load_reference(str(evil), 2)


def _ig_prior(evil: Path, model_dir: Path) -> None:
    from cap_lightning.priors import IGPrior

    IGPrior(model_path=str(evil), steps=2).prepare(["a good movie"], [1], 2, torch.device("cpu"))


def _lime_prior(evil: Path, model_dir: Path) -> None:
    from cap_lightning.priors import LIMEPrior

    LIMEPrior(model_path=str(evil), n_samples=4).prepare(["a good movie"], [1], 2, torch.device("cpu"))


def _adversarial_cli(command: str):
    def run(evil: Path, model_dir: Path) -> None:
        from cap_lightning.adversarial.__main__ import main

        extra = ["--recipe", "deepwordbug"] if command == "textattack" else ["--generator", str(model_dir)]
        main(
            [command, "--ckpt", str(evil), "--dataset", "custom", "--train_file", str(FIXTURES / "sentiment_train.csv"),
             "--test_file", str(FIXTURES / "sentiment_test.csv"), "--n", "2", "--no_progress",
             "--cache_dir", str(evil.parent / "adv"), *extra]
        )  # fmt: skip

    return run


ENTRY_POINTS = {
    "inspect_classifier": _inspect,
    "load_trained_classifier": _load_trained,
    "CapModule.load_from_checkpoint": _module_default,
    "CapModule.load_from_checkpoint(weights_only=False)": _module_unsafe_asked,
    "IG/LIME load_reference": _reference,
    "IGPrior.prepare": _ig_prior,
    "LIMEPrior.prepare": _lime_prior,
    "adversarial inject --ckpt": _adversarial_cli("inject"),
    "adversarial textattack --ckpt": _adversarial_cli("textattack"),
}


def _entry_param(name: str):
    """The TextAttack entry point needs the optional extra (it stops at the missing extra before reading anything)."""
    from cap_lightning.adversarial.environment import textattack_available

    needs_extra = name.startswith("adversarial textattack") and not textattack_available()
    marks = [pytest.mark.skip(reason="optional extra textattack not installed (make install-adversarial)")]
    return pytest.param(name, marks=marks if needs_extra else [])


@pytest.mark.parametrize("entry", [_entry_param(name) for name in ENTRY_POINTS])
def test_a_pickle_payload_never_runs(entry, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil, marker = evil_checkpoint(tmp_path, str(tiny_model_dir))
    with pytest.raises(Exception) as info:
        ENTRY_POINTS[entry](evil, tiny_model_dir)
    assert not marker.exists(), f"{entry} executed the checkpoint's pickle payload"
    assert "evil.ckpt" in str(info.value)
    assert "refused to load" in str(info.value) or "only weights_only=True is allowed" in str(info.value)


@pytest.mark.parametrize("subcommand", ["test", "fit", "validate"])
def test_lightning_ckpt_path_never_runs_a_payload(subcommand, tmp_path, tiny_model_dir, monkeypatch):
    """Lightning 2.6.6's CLI reads ``--ckpt_path`` weights-only first (``LightningCLI._parse_ckpt_path``)."""
    from lmcore.cli import run_cli

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    evil, marker = evil_checkpoint(tmp_path, str(tiny_model_dir))
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "run")},
        "model": {"class_path": "cap_lightning.CapModule", "init_args": {"model_path": str(tiny_model_dir)}},
        "data": {"class_path": "cap_lightning.CapDataModule", "init_args": {
            "dataset": "custom", "batch_size": 4, "max_length": 16,
            "custom": {"train_file": str(FIXTURES / "sentiment_train.csv"),
                       "test_file": str(FIXTURES / "sentiment_test.csv")}}},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run_cli([subcommand, "--config", str(tmp_path / "c.yaml"), "--ckpt_path", str(evil)])
    assert not marker.exists(), f"lightning {subcommand} --ckpt_path executed the checkpoint's pickle payload"


def test_a_trained_checkpoint_loads_weights_only(tmp_path, tiny_model_dir):
    """CapModule checkpoints (with the prior callback's and ModelCheckpoint's state) are plain containers, so every
    reader can be weights-only, including ``trainer.test(ckpt_path=..., weights_only=True)`` after fit."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from cap_lightning.module import CapModule
    from cap_lightning.priors.callback import PriorCacheCallback
    from tests.helpers import CountingPrior, tiny_datamodule

    dm = tiny_datamodule(tiny_model_dir)
    model = CapModule(model_path=str(tiny_model_dir), prior_weight=0.5, ig_steps=2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="best")
    prior = PriorCacheCallback(prior=CountingPrior(), cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        callbacks=[checkpoint, prior], default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(model, datamodule=dm)
    best = checkpoint.best_model_path
    assert trainer.test(model, datamodule=dm, ckpt_path=best, weights_only=True)
    assert CapModule.load_from_checkpoint(best).model is not None
