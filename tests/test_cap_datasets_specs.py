"""The built-in dataset specs: names agree with the Literal alias, each carries its CAP teacher prompt, and the
data module exposes that prompt (or the user's; none for custom data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cap_lightning.datasets import DATASETS, SPECS, CapDataModule, TeacherPrompt
from tests.helpers import tiny_datamodule

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))

# the table reproduce.py held before the prompts moved into the specs
PROMPTS = {
    "banking77": (
        "Classify the banking customer query into exactly one of the following intents.",
        "Query:",
        "Intent:",
    ),
    "hwu64": (
        "Classify the request to a home assistant into exactly one of the following intents.",
        "Request:",
        "Intent:",
    ),
    "clinc150": ("Classify the user utterance into exactly one of the following intents.", "Utterance:", "Intent:"),
    "sst2": ("Classify the sentiment of the movie review as one of the following labels.", "Review:", "Sentiment:"),
    "emotion": ("Classify the emotion of the text into exactly one of the following labels.", "Text:", "Emotion:"),
}


def test_specs_and_the_dataset_names_agree() -> None:
    assert tuple(SPECS) == DATASETS
    assert all(name == spec.name for name, spec in SPECS.items())


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_carries_its_teacher_prompt(name: str) -> None:
    prompt = SPECS[name].prompt
    assert (prompt.instruction, prompt.text_prefix, prompt.answer_prefix) == PROMPTS[name]


def _class_aware_priors(node: object):
    if isinstance(node, dict):
        if str(node.get("class_path", "")).endswith("ClassAwarePrior"):
            yield node.get("init_args", {})
        for value in node.values():
            yield from _class_aware_priors(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_aware_priors(value)


def test_experiments_take_the_teacher_prompt_from_the_dataset_spec() -> None:
    checked = 0
    for path in EXPERIMENTS:
        config = yaml.safe_load(path.read_text())
        dataset = config.get("data", {}).get("init_args", {}).get("dataset")
        for args in _class_aware_priors(config):
            if dataset in SPECS:  # written once, in the spec: never repeated in a YAML
                assert not {"instruction", "text_prefix", "answer_prefix"} & set(args), path.name
                checked += 1
    assert checked > 0


def test_the_data_module_exposes_the_teacher_prompt(tiny_model_dir) -> None:
    assert CapDataModule("hwu64").teacher_prompt == SPECS["hwu64"].prompt
    assert tiny_datamodule(tiny_model_dir).teacher_prompt is None  # custom data has none unless given
    mine = TeacherPrompt("Is the review positive or negative?", "Review:", "Answer:")
    assert tiny_datamodule(tiny_model_dir, teacher_prompt=mine).teacher_prompt == mine
    assert CapDataModule("sst2", teacher_prompt=mine).teacher_prompt == mine
    assert tiny_datamodule(tiny_model_dir, teacher_prompt=mine).hparams_initial["teacher_prompt"]["text_prefix"] == (
        "Review:"
    )


def test_an_empty_prompt_part_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\['text_prefix'\] must not be empty"):
        TeacherPrompt("Classify.", " ", "Label:")
