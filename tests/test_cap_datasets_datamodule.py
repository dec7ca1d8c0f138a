"""CapDataModule: batches with word indices and priors, few-shot and adversarial splits, argument checks."""

import io
from dataclasses import asdict

import pytest
import torch

from cap_lightning.adversarial.format import AdversarialExample, write_adversarial_jsonl
from cap_lightning.datasets import CapDataModule, CustomData
from tests.helpers import tiny_datamodule


def test_batches_carry_word_index_and_broadcast_priors(tiny_model_dir):
    dm = tiny_datamodule(tiny_model_dir)
    dm.setup("fit")
    texts, labels, fingerprint = dm.prior_inputs()
    assert len(texts) == len(labels) == len(dm.splits.train) and len(fingerprint) == 64
    batch = next(iter(dm.train_dataloader()))
    assert "prior" not in batch
    dm.attach_priors([torch.full((len(t.split()),), 0.5) for t in texts])
    batch = next(iter(dm.train_dataloader()))
    content = batch["word_index"] >= 0
    assert torch.all(batch["prior"][content] == 0.5) and torch.all(batch["prior"][~content] == 0)
    assert "prior" not in next(iter(dm.val_dataloader()))


def test_attach_priors_checks_counts_and_shapes(tiny_model_dir):
    dm = tiny_datamodule(tiny_model_dir)
    dm.setup("fit")
    texts, _, _ = dm.prior_inputs()
    with pytest.raises(ValueError, match="priors for"):
        dm.attach_priors([torch.zeros(1)])
    with pytest.raises(ValueError, match="has shape"):
        dm.attach_priors([torch.zeros(len(t.split()) + 1) for t in texts])


def test_few_shot_and_train_subset(tiny_model_dir):
    dm = tiny_datamodule(tiny_model_dir, split="few_shot", shots_per_class=3, seed=1)
    dm.setup("fit")
    assert sorted(e.label for e in dm.splits.train) == [0, 0, 0, 1, 1, 1]
    dm = tiny_datamodule(tiny_model_dir, max_train_examples=5, max_eval_examples=2)
    dm.setup("fit")
    assert len(dm.splits.train) == 5 and len(dm.splits.test) == 2


def test_adversarial_split_replaces_the_test_set(tiny_model_dir, tmp_path):
    path = tmp_path / "attacked.jsonl"
    rows = [AdversarialExample("b4d film", 0, "bad film", "deepwordbug"), AdversarialExample("gr8", 1, "great", "pwws")]
    write_adversarial_jsonl(path, rows)
    dm = tiny_datamodule(tiny_model_dir, split="adversarial", adversarial_file=str(path))
    dm.setup("test")
    assert [(e.text, e.label) for e in dm.splits.test] == [("b4d film", 0), ("gr8", 1)]
    write_adversarial_jsonl(path, [AdversarialExample("x", 7, "x", "pwws")])
    with pytest.raises(ValueError, match=r"labels \[7\] outside 0..1"):
        tiny_datamodule(tiny_model_dir, split="adversarial", adversarial_file=str(path)).setup("test")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dataset": "imdb"}, ValueError, "dataset 'imdb' is not one of"),
        ({"split": "zero_shot"}, ValueError, "split 'zero_shot' is not one of"),
        ({"split": "adversarial"}, ValueError, "needs adversarial_file"),
        ({"adversarial_file": "missing.jsonl"}, FileNotFoundError, "produce it with the adversarial generator"),
        ({"data_dir": "/no/such/dir"}, FileNotFoundError, "is not a folder"),
        ({"shots_per_class": 0}, ValueError, "shots_per_class must be >= 1"),
    ],
)
def test_bad_arguments_fail_at_init(kwargs, error, match):
    with pytest.raises(error, match=match):
        CapDataModule(**kwargs)


def test_too_many_shots_names_the_smallest_class(tiny_model_dir):
    dm = tiny_datamodule(tiny_model_dir, split="few_shot", shots_per_class=50)
    with pytest.raises(ValueError, match="shots_per_class=50 is larger than the smallest class"):
        dm.setup("fit")


def test_real_banking77_few_shot(shared_data, tiny_model_dir):
    dm = CapDataModule("banking77", str(shared_data / "banking77"), str(tiny_model_dir), "few_shot", shots_per_class=10)
    dm.setup("fit")
    assert dm.num_labels == 77 and len(dm.splits.train) == 770 and dm.setting == "fs10"
    assert not {e.text for e in dm.splits.train} & {e.text for e in dm.splits.validation}


def test_custom_data_is_one_typed_option_stored_as_plain_data(tiny_model_dir):
    dm = tiny_datamodule(tiny_model_dir)
    assert isinstance(dm.custom, CustomData) and dm.hparams_initial["custom"] == asdict(dm.custom)
    buffer = io.BytesIO()
    torch.save(dict(dm.hparams_initial), buffer)  # what a checkpoint stores; checkpoints are read weights-only
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["custom"]["label_names"] == ["negative", "positive"]
    with pytest.raises(ValueError, match=r"\['train_file'\] only apply to dataset='custom'"):
        CapDataModule("sst2", custom=CustomData(train_file="x.csv"))
