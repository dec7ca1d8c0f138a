"""The model under attack: a trained classifier (``cap_lightning.classifier``) checked against the data.

Design decisions:
- An HF folder is never given a fresh head: unlike ``load_classifier`` for training, a victim must be trained.
- :func:`load_and_check_victim` classifies the selected clean examples with the same ``predict_logits`` the
  TextAttack wrapper calls, so the clean pass (which examples can be attacked) and the attack agree.
"""

from __future__ import annotations

from cap_lightning.classifier import ClassifierInfo, inspect_classifier, load_trained_classifier, predict_logits


def inspect_victim(victim: str) -> ClassifierInfo:
    """Describe ``victim`` from metadata only (see :func:`cap_lightning.classifier.inspect_classifier`)."""
    return inspect_classifier(victim, role="victim")


def check_label_count(info: ClassifierInfo, num_labels: int, label_source: str) -> None:
    """Raise when the victim's label count differs from the data's."""
    if info.num_labels != num_labels:
        raise ValueError(
            f"victim {info.path} has {info.num_labels} labels but {label_source} has {num_labels}; "
            "attack a victim trained on this dataset"
        )


def load_and_check_victim(info: ClassifierInfo, victim: str, selection, max_length: int, batch_size: int):
    """Load the victim and classify the selected clean examples; refuse a selection it gets entirely wrong (nothing to
    attack). Returns ``(model, tokenizer, predictions, correct)``."""
    model, tokenizer = load_trained_classifier(info)
    texts = [e.text for e in selection.examples]
    pred = predict_logits(model, tokenizer, texts, max_length, batch_size).argmax(-1).tolist()
    correct = [p == e.label for p, e in zip(pred, selection.examples)]
    if not any(correct):
        raise ValueError(
            f"victim {victim} classifies none of the {len(texts)} selected {selection.split} examples correctly: "
            "nothing to attack (is it trained on this dataset and label order?)"
        )
    return model, tokenizer, pred, correct
