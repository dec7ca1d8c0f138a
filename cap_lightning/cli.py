"""The ``lightning`` / ``cap-lightning`` command: a generic LightningCLI in subclass mode.

``lightning fit|validate|test|predict --config experiments/X.yaml`` — the YAML's ``class_path`` entries pick the
module, the data module, callbacks and logger, so the same launcher serves ``cap_lightning`` and ``steering``.

Design decisions:
- ``model.init_args.model_path`` is linked into ``data.init_args.model_path`` (tokenizer = model).
- W&B is offline unless the user configured a key (``WANDB_API_KEY`` or ``wandb login``); an unnamed
  ``WandbLogger`` run is named and grouped from the config (dataset / prior / setting / seed).
- The resolved config is saved as ``config.yaml`` in the run folder and logged to the W&B run config.
- ``fit`` ends with a test of the best checkpoint (``--test_after_fit false`` to skip), so one command trains
  and reports test accuracy in the same W&B run; the metrics, labels and resolved config go to
  ``<run folder>/test_metrics.json`` for ``python -m cap_lightning.report``.
- Imports no model code at import time: ``--help`` and ``--print_config`` stay fast.
- Steering configs (``model.class_path: steering.SteeringModule``) run as ``lightning predict`` (extract and write
  the vector) then ``lightning test`` (evaluate it); their runs are named ``<task>-<method>-k<k>-a<alpha>-s<seed>``
  and grouped ``steer/<task>``. The ``--config`` path is exported as ``CAP_LIGHTNING_CONFIG`` so a module can name
  the exact command to run first ("run predict first: lightning predict --config X.yaml"). ``cap_lightning`` still
  imports nothing from ``steering``: the module class is chosen by the YAML.
"""

from __future__ import annotations

import json
import netrc
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _short(class_path: str | None) -> str:
    name = (class_path or "none").rsplit(".", 1)[-1]
    return name.removesuffix("Prior").lower() or "none"


def _steering_labels(config: Any, data: dict, model: dict) -> dict[str, Any]:
    task = data.get("task", "task")
    method = model.get("method", "grains")
    k = model.get("top_k", 10)
    k = k[0] if isinstance(k, list) and k else k
    seed = data.get("seed", config.get("seed_everything"))
    name = f"{task}-{method}-k{k}-a{model.get('alpha', 4.0):g}-s{seed}"
    return {"name": name, "group": f"steer/{task}", "tags": ["steering", str(task), str(method)]}


def run_labels(config: Any) -> dict[str, Any]:
    """Name, group and tags of a run from its resolved config (dataset, prior, setting, seed)."""
    data = (config.get("data") or {}).get("init_args") or {}
    model = (config.get("model") or {}).get("init_args") or {}
    if str((config.get("model") or {}).get("class_path", "")).startswith("steering."):
        return _steering_labels(config, data, model)
    prior = "none"
    for cb in config.get("trainer", {}).get("callbacks") or []:
        if str(cb.get("class_path", "")).endswith("PriorCacheCallback"):
            prior = _short(cb.get("init_args", {}).get("prior", {}).get("class_path"))
    weight = float(model.get("prior_weight", 0.0) or 0.0)
    if weight == 0.0:
        prior = "baseline"
    else:  # a λ / loss / attribution sweep must not collapse into one group
        prior += f"-{model.get('prior_loss', 'kl')}{weight:g}"
        attribution = model.get("attribution", "ig")
        prior += "" if attribution == "ig" else f"-{attribution}"
    dataset = data.get("dataset", "data")
    split = data.get("split", "full")
    setting = f"fs{data.get('shots_per_class')}" if split == "few_shot" else split
    seed = data.get("seed", config.get("seed_everything"))
    return {
        "name": f"{dataset}-{prior}-{setting}-s{seed}",
        "group": f"{dataset}/{setting}",
        "tags": [str(dataset), prior, str(setting)],
    }


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run: the parent of its checkpoint folder, else the trainer's log dir."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    if dirpath:
        return Path(dirpath).parent
    return Path(trainer.log_dir or trainer.default_root_dir)


class _SaveAndLogConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder and put the resolved config into the logger's hyperparameters."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            config = self.parser.dump(self.config, skip_none=False, format="json")
            trainer.logger.log_hyperparams({"config": config})


class CapCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.model_path", "data.init_args.model_path")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit only: test the best checkpoint (or the final weights) on the test split when training ends",
        )

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", True) or self.trainer.interrupted:
            return
        trainer = self.trainer
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, weights_only=False)
        folder = run_dir(trainer)  # may be a collective: every rank calls it
        if trainer.is_global_zero and results:
            config = self.config[self.subcommand]
            record = {
                **run_labels(config.as_dict()),
                "metrics": results[0],
                "best_checkpoint": best,
                "config": self._parser(self.subcommand).dump(config, skip_none=False, format="json"),
            }
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / ".test_metrics.json.tmp"
            tmp.write_text(json.dumps(record, indent=2))
            tmp.replace(folder / "test_metrics.json")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger")
        loggers = logger if isinstance(logger, list) else [logger]
        labels = run_labels(config.as_dict() if hasattr(config, "as_dict") else config)
        for entry in loggers:
            if hasattr(entry, "get") and str(entry.get("class_path", "")).endswith("WandbLogger"):
                init = entry.init_args
                for key in ("name", "group", "tags"):
                    if init.get(key) in (None, []):
                        init[key] = labels[key]


def _config_arg(args: list[str]) -> str | None:
    """The value of the last ``--config`` / ``-c`` option in ``args``."""
    found = None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--config="):
            found = arg.split("=", 1)[1]
    return found


def run_cli(args: list[str] | None = None) -> CapCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return it (for tests and notebooks)."""
    if "WANDB_MODE" not in os.environ and not _wandb_key_configured():
        os.environ["WANDB_MODE"] = "offline"
    config = _config_arg(list(args) if args is not None else sys.argv[1:])
    if config is not None:
        os.environ["CAP_LIGHTNING_CONFIG"] = config  # read by steering.SteeringModule's "run predict first" error
    return CapCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=_SaveAndLogConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lightning`` / ``cap-lightning`` / ``python -m cap_lightning``."""
    run_cli(args)
