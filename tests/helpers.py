"""Shared builders for cap_lightning tests: a tiny data module over the sentiment fixture, counting priors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cap_lightning.datasets import CapDataModule, CustomData
from cap_lightning.priors.base import AttributionPrior

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_datamodule(model_dir: Path, **overrides) -> CapDataModule:
    kwargs = dict(
        dataset="custom",
        custom=CustomData(
            train_file=str(FIXTURES / "sentiment_train.csv"),
            test_file=str(FIXTURES / "sentiment_test.csv"),
            label_names=["negative", "positive"],
        ),
        model_path=str(model_dir),
        batch_size=4,
        validation_fraction=0.25,
        max_length=16,
    )
    kwargs.update(overrides)
    return CapDataModule(**kwargs)


class CountingPrior(AttributionPrior):
    """A deterministic prior (word position / length) that counts how many texts it scored."""

    def __init__(self, tag: str = "a", fail_after: int | None = None) -> None:
        self.tag = tag
        self.calls = 0
        self.fail_after = fail_after

    def config(self) -> dict:
        return {"tag": self.tag}

    def prepare(self, texts, labels, num_labels, device, label_names=None) -> None:
        torch.randn(5)  # e.g. a reference model's freshly initialised head

    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[torch.Tensor]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash during extraction")
        self.calls += len(texts)
        torch.rand(3)  # a real prior draws random numbers; the student's RNG stream must not notice
        out = []
        for t in texts:
            n = len(t.split())
            out.append(torch.arange(1, n + 1, dtype=torch.float32) / n)
        return out


def quiet_trainer(**overrides):
    """A CPU ``L.Trainer`` for tests: no logger, checkpoints, progress bar, summary, sanity check or validation."""
    import lightning as L

    args = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    return L.Trainer(**{**args, **overrides})
