"""SmolLM2-135M-Instruct through ``lightning predict`` → ``lightning test`` on a few TruthfulQA questions (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from steering import SteeringVector

REPO_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "steer_smollm2_truthfulqa.yaml"


@pytest.mark.slow
def test_smollm2_truthfulqa_predict_then_test(shared_data, tmp_path, monkeypatch):
    from lmcore.cli import run_cli
    from lmcore.models import resolve_model_path

    try:
        resolve_model_path("smollm2-135m")
    except (ModuleNotFoundError, ValueError) as e:
        pytest.skip(f"SmolLM2 weights unavailable: {e}")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)

    config = yaml.safe_load(REPO_CONFIG.read_text())
    config["trainer"].update(logger=False, default_root_dir=str(tmp_path))
    config["model"]["init_args"].update(
        layers=[12, 13, 14], steer_layers=None, vector_path=str(tmp_path / "v.safetensors")
    )
    config["model"]["init_args"]["grains"].update(ig_steps=4, internal_batch_size=4)
    task_args = {"data_dir": str(shared_data / "truthfulqa"), "variant": "mc"}
    config["data"]["init_args"].update(n_steer=4, n_dev=2, n_test=5, batch_size=2, task_args=task_args)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli(["predict", "--config", str(path)])
    vec = SteeringVector.load(tmp_path / "v.safetensors")
    assert vec.hidden_size == 576 and vec.layers == [12, 13, 14] and vec.metadata["n_examples_gathered"] == 4
    results = run_cli(["test", "--config", str(path)]).model.test_results
    assert results["test/n_examples"] == 5 and results["test/steered/kl"] > 0
    record = json.loads((tmp_path / "v.test.json").read_text())
    assert record["splits"]["sizes"] == {"steer": 4, "dev": 2, "test": 5}
