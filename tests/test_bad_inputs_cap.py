"""Bad inputs to cap_lightning, one row each: the exception type and a message naming the bad value and what is
allowed (or what to do), raised before any model weights load.

Every loader of weights (``lmcore.models.load_classifier`` / ``load_causal_lm``, ``from_pretrained`` of the
transformers auto classes, ``CapModule.load_from_checkpoint``) is patched to fail the test if it is called: each of
these inputs is checkable from the config and the data files alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class WeightsLoaded(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise WeightsLoaded(f"model weights were loaded for {args[:1]} before the bad input was refused")

    import transformers

    import cap_lightning.module
    import lmcore.models

    for name in ("load_classifier", "load_causal_lm"):
        monkeypatch.setattr(lmcore.models, name, refuse)
    monkeypatch.setattr(cap_lightning.module, "load_classifier", refuse)
    for auto in ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM"):
        monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", refuse)


def _csv(folder: Path, name: str, body: str | bytes) -> str:
    path = folder / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(path)


def _custom(folder: Path, train: str | bytes = "text,label\ngood,pos\nbad,neg\n", **options):
    from cap_lightning.datasets import CustomData

    return CustomData(
        train_file=_csv(folder, "train.csv", train),
        test_file=_csv(folder, "test.csv", "text,label\nfine,pos\nawful,neg\n"),
        **options,
    )


def _load(folder: Path, **custom):
    from cap_lightning.datasets import load_splits

    train = custom.pop("train", "text,label\ngood,pos\nbad,neg\n")
    return load_splits("custom", custom=_custom(folder, train, **custom))


def _datamodule(folder: Path, model_dir: Path, **kwargs):
    from cap_lightning.datasets import CapDataModule

    dm = CapDataModule(**{"dataset": "custom", "custom": _custom(folder), "model_path": str(model_dir), **kwargs})
    dm.setup("fit")
    return dm


def _prepare(prior, texts=("good film", "bad film"), labels=(1, 0), num_labels=2, names=("neg", "pos")):
    prior.prepare(list(texts), list(labels), num_labels, torch.device("cpu"), label_names=list(names))


def _ckpt(folder: Path, num_labels: int, model_dir: Path, payload: bool = False) -> str:
    path = folder / ("evil.ckpt" if payload else "ref.ckpt")
    state = {"hyper_parameters": {"num_labels": num_labels, "model_path": str(model_dir)}, "state_dict": {}}
    if payload:
        state["x"] = _Payload(folder / "pwned")
    torch.save(state, path)
    return str(path)


def _ig(**kwargs):
    from cap_lightning.priors import IGPrior

    return IGPrior(**kwargs)


def _lime(**kwargs):
    from cap_lightning.priors import LIMEPrior

    return LIMEPrior(**kwargs)


def _cap(**kwargs):
    from cap_lightning.priors import ClassAwarePrior

    return ClassAwarePrior(**kwargs)


def _hybrid(**kwargs):
    from cap_lightning.priors import HybridPrior
    from tests.helpers import CountingPrior

    return HybridPrior(sources=[CountingPrior()], **kwargs)


def _module(**kwargs):
    from cap_lightning.module import CapModule

    return CapModule(**kwargs)


Case = tuple[Callable[[Path, Path, Path], object], type[BaseException], str]

CASES: dict[str, Case] = {
    # ---- datasets: names, options, files
    "unknown dataset": (
        lambda d, m, t: __import__("cap_lightning.datasets", fromlist=["load_splits"]).load_splits("imdb"),
        ValueError,
        r"unknown dataset 'imdb'; expected one of \['sst2', .*'custom'\]",
    ),
    "unknown dataset in the data module": (
        lambda d, m, t: _datamodule(d, m, dataset="imdb"),
        ValueError,
        r"dataset 'imdb' is not one of \('sst2'",
    ),
    "unknown split": (
        lambda d, m, t: _datamodule(d, m, split="fewshot"),
        ValueError,
        r"split 'fewshot' is not one of \('full', 'few_shot', 'adversarial'\)",
    ),
    "zero shots": (
        lambda d, m, t: _datamodule(d, m, shots_per_class=0),
        ValueError,
        r"shots_per_class must be >= 1, got 0",
    ),
    "more shots than a class has": (
        lambda d, m, t: _datamodule(d, m, split="few_shot", shots_per_class=5),
        ValueError,
        r"shots_per_class=5.*(has|have) only 1",
    ),
    "bad max_length": (lambda d, m, t: _datamodule(d, m, max_length=0), ValueError, r"max_length must be >= 1, got 0"),
    "bad validation_fraction": (
        lambda d, m, t: _datamodule(d, m, validation_fraction=1.5),
        ValueError,
        r"validation_fraction must be in \(0, 1\), got 1.5",
    ),
    "custom options with a built-in dataset": (
        lambda d, m, t: _datamodule(d, m, dataset="sst2"),
        ValueError,
        r"\['train_file', 'test_file'\] only apply to dataset='custom', not to dataset='sst2'",
    ),
    "unsupported file suffix": (
        lambda d, m, t: __import__("cap_lightning.datasets", fromlist=["load_splits"]).load_splits(
            "custom",
            custom=__import__("cap_lightning.datasets", fromlist=["CustomData"]).CustomData(
                train_file=_csv(d, "train.xlsx", "x"), test_file=_csv(d, "test.csv", "text,label\na,b\n")
            ),
        ),
        ValueError,
        r"train_file='.*train\.xlsx': unsupported file suffix '\.xlsx'; supported: \['\.csv'",
    ),  # fmt: skip
    "missing file": (
        lambda d, m, t: __import__("cap_lightning.datasets", fromlist=["load_splits"]).load_splits(
            "custom",
            custom=__import__("cap_lightning.datasets", fromlist=["CustomData"]).CustomData(
                train_file=str(d / "nope.csv"), test_file=str(d / "nope.csv")
            ),
        ),
        FileNotFoundError,
        r"train_file not found: .*nope\.csv",
    ),  # fmt: skip
    "missing column": (
        lambda d, m, t: _load(d, train="sentence,label\ngood,pos\n"),
        ValueError,
        r"train\.csv: missing column\(s\) \['text'\]; columns present: \['sentence', 'label'\]",
    ),
    "non-UTF-8 file": (
        lambda d, m, t: _load(d, train="text,label\ncafé,pos\n".encode("latin-1")),
        ValueError,
        r"train\.csv, line 2: not valid utf-8 .*set the custom data's encoding option",
    ),
    "unknown encoding": (
        lambda d, m, t: _load(d, encoding="utf-9"),
        ValueError,
        r"encoding 'utf-9' is not a known text encoding; use a Python codec name such as 'utf-8'",
    ),
    "test label outside the train labels": (
        lambda d, m, t: __import__("cap_lightning.datasets", fromlist=["load_splits"]).load_splits(
            "custom", custom=_custom(d, label_names=["pos"])
        ),
        ValueError,
        r"'neg'.*\['pos'\]",
    ),  # fmt: skip
    # ---- priors: options, references, teachers
    "unknown CAP target": (
        lambda d, m, t: _cap(teacher_path=str(t), target="gold"),
        ValueError,
        r"target 'gold' is not one of \('gold_prob', 'gold_logprob', 'label_softmax', 'contrastive_k'\)",
    ),
    "unknown CAP mask strategy": (
        lambda d, m, t: _cap(teacher_path=str(t), mask_strategy="random"),
        ValueError,
        r"mask_strategy 'random' is not one of \('loo', 'lime', 'loo\+lime'\)",
    ),
    "unknown teacher dtype": (
        lambda d, m, t: _cap(teacher_path=str(t), teacher_dtype="fp8"),
        ValueError,
        r"teacher_dtype 'fp8' is not one of \('float32', 'bfloat16', 'float16'\)",
    ),
    "CAP n_samples too small": (
        lambda d, m, t: _cap(teacher_path=str(t), n_samples=1),
        ValueError,
        r"n_samples must be >= 2, got 1",
    ),
    "missing teacher": (
        lambda d, m, t: _cap(teacher_path=str(d / "no-teacher")),
        ValueError,
        r"model_path '.*no-teacher' does not exist. Allowed: a short name \['minilm', 'smollm2-135m'\]",
    ),
    "CAP label names the teacher cannot encode": (
        lambda d, m, t: _prepare(
            _cap(teacher_path=str(t), instruction="i", text_prefix="q", answer_prefix="a", example_cache_dir=None),
            names=("yes", "xyzzy_plugh"),
        ),
        ValueError,
        r"label 1 'xyzzy_plugh' cannot be encoded by the teacher tokenizer",
    ),  # fmt: skip
    "CAP label count differs from the data's": (
        lambda d, m, t: _prepare(_cap(teacher_path=str(t), example_cache_dir=None), names=("yes", "no", "true")),
        ValueError,
        r"3 label names for 2 labels: \['yes', 'no', 'true'\]; give one name per label",
    ),
    "unknown IG baseline": (
        lambda d, m, t: _ig(model_path=str(m), baseline="zeros"),
        ValueError,
        r"baseline 'zeros' is not one of \('pad', 'mask'\)",
    ),
    "IG steps 0": (lambda d, m, t: _ig(model_path=str(m), steps=0), ValueError, r"steps must be >= 1, got 0"),
    "unknown LIME mask strategy": (
        lambda d, m, t: _lime(model_path=str(m), mask_strategy="random"),
        ValueError,
        r"mask_strategy 'random' is not one of",
    ),
    "LIME n_samples 1": (lambda d, m, t: _lime(model_path=str(m), n_samples=1), ValueError, r"n_samples >= 2.*got 1"),
    "unknown hybrid aggregation": (lambda d, m, t: _hybrid(agg="median"), ValueError, r"agg 'median' is not one of"),
    "reference checkpoint with the wrong label count": (
        lambda d, m, t: _prepare(_ig(model_path=_ckpt(d, 3, m))),
        ValueError,
        r"ref\.ckpt has 3 labels, the data has 2",
    ),
    "missing reference checkpoint": (
        lambda d, m, t: _prepare(_ig(model_path=str(d / "gone.ckpt"))),
        FileNotFoundError,
        r"reference checkpoint '.*gone\.ckpt' does not exist",
    ),
    "pickle payload in a reference checkpoint": (
        lambda d, m, t: _prepare(_lime(model_path=_ckpt(d, 2, m, payload=True))),
        ValueError,
        r"evil\.ckpt: refused to load",
    ),
    "untrained reference head": (
        lambda d, m, t: _prepare(_ig(model_path=str(t))),
        ValueError,
        r"without a trained classification head",
    ),
    "one cross-fitting fold": (
        lambda d, m, t: _lime(model_path=str(m), fine_tune_epochs=1, cross_fit_folds=1),
        ValueError,
        r"cross_fit_folds=1 leaves the reference no text to fine-tune on .*use null",
    ),
    "cross-fitting a reference that is not fine-tuned": (
        lambda d, m, t: _ig(model_path=str(m), cross_fit_folds=5),
        ValueError,
        r"cross_fit_folds=5 needs fine_tune_epochs >= 1 .*got fine_tune_epochs=0",
    ),
    "more cross-fitting folds than training texts": (
        lambda d, m, t: _prepare(_ig(model_path=str(m), fine_tune_epochs=1, cross_fit_folds=3)),
        ValueError,
        r"cross_fit_folds=3 needs at least 3 distinct training texts \(one per fold\), got 2",
    ),
    "prior cache chunk_size 0": (
        lambda d, m, t: __import__("cap_lightning.priors.callback", fromlist=["x"]).PriorCacheCallback(
            _ig(model_path=str(m)), chunk_size=0
        ),
        ValueError,
        r"chunk_size must be >= 1, got 0",
    ),  # fmt: skip
    # ---- the trained module
    "unknown alignment loss": (
        lambda d, m, t: _module(model_path=str(m), prior_loss="l1"),
        ValueError,
        r"prior_loss 'l1' is not one of",
    ),
    "unknown attribution": (
        lambda d, m, t: _module(model_path=str(m), attribution="shap"),
        ValueError,
        r"attribution 'shap' is not one of",
    ),
    "one label": (
        lambda d, m, t: _module(model_path=str(m), num_labels=1),
        ValueError,
        r"num_labels must be >= 2, got 1",
    ),
    "negative prior weight": (
        lambda d, m, t: _module(model_path=str(m), prior_weight=-1.0),
        ValueError,
        r"prior_weight must be >= 0, got -1",
    ),
    "missing model path": (
        lambda d, m, t: _module(model_path=str(d / "no-model")),
        ValueError,
        r"model_path '.*no-model' does not exist. Allowed: a short name",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_before_weights_load(case, tmp_path, tiny_model_dir, teacher_dir):
    make, error, message = CASES[case]
    with pytest.raises(error, match=message) as info:
        make(tmp_path, tiny_model_dir, teacher_dir)
    assert not isinstance(info.value, WeightsLoaded)
    assert not (tmp_path / "pwned").exists()


def test_the_table_is_wide():
    assert len(CASES) >= 15


def test_a_pickle_checkpoint_is_refused_without_running_it(tmp_path, tiny_model_dir):
    """The same ``.ckpt`` read straight: ``torch.load`` refuses it weights-only (plain ``pickle`` would run it)."""
    from cap_lightning.classifier import read_checkpoint

    path = _ckpt(tmp_path, 2, tiny_model_dir, payload=True)
    with pytest.raises(ValueError, match=r"evil\.ckpt: refused to load"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
