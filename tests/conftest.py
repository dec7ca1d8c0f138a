"""Test-wide set-up: offline hub, W&B off, seeded, markers that skip without the hardware they need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in items:
        if "gpu" in item.keywords and n_cuda < 1:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (torch.cuda.device_count() == 0)"))
        if "multi_gpu" in item.keywords and n_cuda < 2:
            item.add_marker(pytest.mark.skip(reason=f"needs 2 CUDA devices, found {n_cuda}"))


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny 2-label classifier + tokenizer folder, built once per test run."""
    from tests.tiny import save_tiny_classifier

    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"), num_labels=2)


@pytest.fixture(scope="module")
def model_tok():
    """A tiny random Llama and its tokenizer, built once per test module."""
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    return tiny_causal_lm("llama"), tiny_lm_tokenizer()


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory) -> Path:
    """A saved tiny causal LM + tokenizer folder (the CAP teacher), built once per test run."""
    from tests.tiny_lm import save_tiny_lm

    return save_tiny_lm(tmp_path_factory.mktemp("tiny-teacher"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A saved tiny random Llama + tokenizer folder (the steering Lightning tests' model)."""
    from tests.tiny_lm import save_tiny_lm

    return save_tiny_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    """A 12-row contrastive pairs file over the tiny Llama's vocabulary."""
    from tests.tiny_lm import write_tiny_pairs

    return write_tiny_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 12)
