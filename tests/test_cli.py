import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmcore.cli import run_cli, run_labels
from tests.helpers import FIXTURES

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


def test_there_are_experiments():
    names = {p.name for p in EXPERIMENTS}
    assert {"sst2_baseline.yaml", "sst2_ig.yaml", "banking77_baseline.yaml", "banking77_ig.yaml"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_type_checks(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(["fit", "--config", str(path), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith(("cap_lightning.", "steering."))


def tiny_config(tmp_path: Path, model_dir: Path, **trainer) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 2,
            "limit_val_batches": 1,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
            "logger": {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"project": "cap-test", "save_dir": str(tmp_path / "run")},
            },
            "callbacks": [
                {
                    "class_path": "cap_lightning.PriorCacheCallback",
                    "init_args": {
                        "cache_dir": str(tmp_path / "cache"),
                        "chunk_size": 4,
                        "prior": {
                            "class_path": "cap_lightning.IGPrior",
                            "init_args": {
                                "model_path": str(model_dir),
                                "steps": 4,
                                "fine_tune_epochs": 1,
                                "reference_cache_dir": str(tmp_path / "refs"),
                            },
                        },
                    },
                },
                {"class_path": "cap_lightning.AttributionTableCallback", "init_args": {"num_examples": 3, "steps": 4}},
            ],
            **trainer,
        },
        "model": {
            "class_path": "cap_lightning.CapModule",
            "init_args": {"model_path": str(model_dir), "prior_weight": 0.5, "ig_steps": 2},
        },
        "data": {
            "class_path": "cap_lightning.CapDataModule",
            "init_args": {
                "dataset": "custom",
                "custom": {
                    "train_file": str(FIXTURES / "sentiment_train.csv"),
                    "test_file": str(FIXTURES / "sentiment_test.csv"),
                },
                "batch_size": 4,
                "max_length": 16,
            },
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fit_end_to_end_with_ig_prior(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = run_cli(["fit", "--config", str(tiny_config(tmp_path, tiny_model_dir))])
    metrics = cli.trainer.callback_metrics
    assert {"test/acc", "test/macro_f1"} <= set(metrics)  # fit ended with a test of the best checkpoint
    assert cli.trainer.logger.experiment.name == "custom-ig-kl0.5-full-s0"
    assert list((tmp_path / "cache").glob("*/priors.safetensors"))
    (config,) = list((tmp_path / "run").rglob("config.yaml"))
    (html,) = list((tmp_path / "run").rglob("attributions.html"))
    assert "<span" in html.read_text() and "nan" not in html.read_text()
    (record,) = list((tmp_path / "run").rglob("test_metrics.json"))
    folder = record.parent  # one folder per run: runs/<project>/<id>/, holding everything the run wrote
    assert folder != tmp_path / "run" and config.parent == html.parent == folder
    assert (folder / "checkpoints").is_dir() and folder.parent.name == "cap-test"
    from cap_lightning.report import collect, table

    groups = collect([str(tmp_path / "run")])
    assert list(groups) == ["custom-ig-kl0.5-full"]
    assert "| custom-ig-kl0.5-full | 0 |" in table(groups)


def test_without_a_logger_each_run_gets_its_own_folder_under_runs(tmp_path, tiny_model_dir, monkeypatch):
    config = yaml.safe_load(tiny_config(tmp_path, tiny_model_dir, logger=False).read_text())
    del config["trainer"]["default_root_dir"]
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][1:]  # no prior: a baseline run
    config["model"]["init_args"]["prior_weight"] = 0.0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("LMCORE_RUN_STAMP", raising=False)
    run_cli(["fit", "--config", str(tmp_path / "c.yaml")])
    assert sorted(os.listdir(work)) == ["runs"]  # nothing lands in the current folder itself
    (record,) = list((work / "runs").rglob("test_metrics.json"))
    assert {"config.yaml", "checkpoints"} <= set(os.listdir(record.parent))
    assert record.parent.parent.name == "custom-baseline-full-s0"


def test_run_labels_name_and_group_runs():
    config = {
        "seed_everything": 3,
        "trainer": {"callbacks": [{"class_path": "cap_lightning.PriorCacheCallback",
                                   "init_args": {"prior": {"class_path": "cap_lightning.IGPrior"}}}]},
        "model": {"class_path": "cap_lightning.CapModule", "init_args": {"prior_weight": 0.5}},
        "data": {"init_args": {"dataset": "banking77", "split": "few_shot", "shots_per_class": 10, "seed": 1}},
    }  # fmt: skip
    labels = run_labels(config)
    assert labels["name"] == "banking77-ig-kl0.5-fs10-s1" and labels["group"] == "banking77/fs10"
    config["model"]["init_args"].update(prior_weight=1.0, prior_loss="mse", attribution="expected_gradients")
    assert run_labels(config)["name"] == "banking77-ig-mse1-expected_gradients-fs10-s1"
    config["model"]["init_args"]["prior_weight"] = 0.0
    assert run_labels(config)["name"] == "banking77-baseline-fs10-s1"
    config["model"]["init_args"].update(prior_weight=0.1, prior_mask="teacher_correct", alignment_level="subword")
    config["trainer"]["callbacks"][0]["init_args"]["control"] = "shuffled"
    assert run_labels(config)["name"] == "banking77-ig-shuffled-mse0.1-expected_gradients-gated-subword-fs10-s1"


def test_run_labels_come_from_the_model_class_hook():
    steer = {"model": {"class_path": "steering.SteeringModule", "init_args": {"method": "caa", "alpha": 8.0}},
             "data": {"init_args": {"task": "truthfulqa", "seed": 2}}}  # fmt: skip
    labels = run_labels(steer)
    assert labels["name"].startswith("truthfulqa-caa-") and labels["name"].endswith("-a8-s2")
    assert labels["group"] == "steer/truthfulqa"
    plain = run_labels(
        {"seed_everything": 4, "model": {"class_path": "lightning.pytorch.demos.boring_classes.BoringModel"}}
    )
    assert plain == {"name": "BoringModel-s4", "group": "BoringModel", "tags": ["BoringModel"]}


def test_ddp_two_cpu_processes_fit_with_priors(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, devices=2, strategy="ddp")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "cap_lightning", "fit", "--config", str(config)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = list((tmp_path / "cache").glob("*/priors.safetensors"))
    assert len(merged) == 1 and not list((tmp_path / "cache").glob("*/chunk-*"))
    assert "test/acc" in proc.stdout + proc.stderr
