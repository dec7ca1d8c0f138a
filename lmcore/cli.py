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
- Run naming belongs to the packages: a LightningModule may define ``run_labels(config) -> {"name", "group",
  "tags"}`` (a staticmethod reading the resolved config); the launcher calls it on the class named by
  ``model.class_path`` and knows nothing else about ``cap_lightning`` or ``steering``.
- Every run writes into its own folder (``run_dir``): ``<save_dir>/<project>/<run id>/`` with a logger (the folder
  Lightning puts checkpoints in), ``runs/<run name>/<timestamp>/`` without one (``trainer.default_root_dir``
  defaults to ``runs``). ``config.yaml``, ``test_metrics.json``, ``checkpoints/`` and callbacks' files go there.
- The ``--config`` path is kept (``launch_command``) so a module can name the exact command to run first.
"""

from __future__ import annotations

import importlib
import netrc
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from lmcore.io import atomic_write_json
from lmcore.runs import run_dir


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _model_class(config: Any) -> type | None:
    class_path = str((config.get("model") or {}).get("class_path") or "")
    module, _, name = class_path.rpartition(".")
    if not module:
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def run_labels(config: Any) -> dict[str, Any]:
    """Name, group and tags of a run from its resolved config: the model class's ``run_labels`` hook, else the
    class name and seed."""
    cls = _model_class(config)
    hook = getattr(cls, "run_labels", None)
    if callable(hook):
        return hook(config)
    name = cls.__name__ if cls is not None else "run"
    seed = config.get("seed_everything")
    return {"name": f"{name}-s{seed}", "group": name, "tags": [name]}


def run_summary(trainer: L.Trainer, folder: Path) -> str:
    """Where this run's files are: its folder and what is in it, and the W&B run (with the sync command offline)."""
    lines = [f"[run] folder: {folder}"]
    for item in sorted(folder.iterdir()) if folder.is_dir() else []:
        lines.append(f"[run]   {item.name}{'/' if item.is_dir() else ''}")
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            run = logger.experiment
            where = Path(run.dir).parent
            offline = getattr(getattr(run, "settings", None), "mode", None) == "offline" or "offline-run" in str(where)
            note = f"offline; upload: wandb sync {where}" if offline else run.url
            lines.append(f"[run] W&B run {run.name!r}: {where} ({note})")
    return "\n".join(lines)


class _SaveAndLogConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder and put the resolved config into the logger's hyperparameters."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)  # fmt: skip
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            config = self.parser.dump(self.config, skip_none=False, format="json")
            trainer.logger.log_hyperparams({"config": config})


RUNS = "runs"
_RUN_STAMP = "LMCORE_RUN_STAMP"
_launch: dict[str, str | None] = {"config": None}


def launch_command(subcommand: str = "predict") -> str:
    """``lightning <subcommand> --config <the --config this process was launched with>`` (for "run X first")."""
    return f"lightning {subcommand} --config {_launch['config'] or '<your config>.yaml'}"


class LauncherCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"trainer.default_root_dir": RUNS})
        parser.link_arguments("model.init_args.model_path", "data.init_args.model_path")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit only: test the best checkpoint (or the final weights) on the test split when training ends",
        )

    def after_fit(self) -> None:
        # what fit logged last (e.g. the final epoch's training means), before the test replaces the logged metrics
        self.fit_metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        if not self.config[self.subcommand].get("test_after_fit", True) or self.trainer.interrupted:
            return
        trainer = self.trainer
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, weights_only=True)
        folder = run_dir(trainer)  # may be a collective: every rank calls it
        if trainer.is_global_zero and results:
            config = self.config[self.subcommand]
            record = {
                **run_labels(config.as_dict()),
                "metrics": results[0],
                "best_checkpoint": best,
                "config": self._parser(self.subcommand).dump(config, skip_none=False, format="json"),
            }
            atomic_write_json(folder / "test_metrics.json", record)
        if trainer.is_global_zero:
            print(run_summary(trainer, folder), flush=True)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger")
        loggers = logger if isinstance(logger, list) else [logger]
        labels = run_labels(config.as_dict() if hasattr(config, "as_dict") else config)
        trainer_cfg = config.get("trainer", {})
        if all(e is False for e in loggers) and trainer_cfg.get("default_root_dir") in (None, RUNS):
            # no logger: a folder per run (a DDP child inherits the parent's through the environment)
            stamp = os.environ.get(_RUN_STAMP) if os.environ.get("LOCAL_RANK", "0") != "0" else None
            if stamp is None:
                stamp = os.environ[_RUN_STAMP] = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            trainer_cfg["default_root_dir"] = str(Path(RUNS) / labels["name"] / stamp)
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


def run_cli(args: list[str] | None = None, run: bool = True) -> LauncherCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return it (for tests and notebooks). ``run=False``: no
    subcommand in ``args``; the config is parsed and the model, data module and trainer are instantiated, not run
    (a driver that needs the same objects as ``lightning test`` without a test)."""
    if "WANDB_MODE" not in os.environ and not _wandb_key_configured():
        os.environ["WANDB_MODE"] = "offline"
    config = _config_arg(list(args) if args is not None else sys.argv[1:])
    _launch["config"] = config
    return LauncherCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=_SaveAndLogConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lightning`` / ``cap-lightning`` / ``python -m cap_lightning``."""
    run_cli(args)
