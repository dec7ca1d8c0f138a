"""The folder of a run: where its checkpoints, config, metrics and callbacks' files go.

Lightning puts checkpoints in ``<save_dir>/<name>/<version>/checkpoints`` of the first logger (or
``default_root_dir/checkpoints`` without one); the run folder is that ``checkpoints/``'s parent, so everything a
run writes sits together, and two runs never share a folder (``lmcore.cli`` gives logger-less runs their own
``default_root_dir``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run, where Lightning puts its ``checkpoints/``: the parent of an explicit checkpoint
    ``dirpath``, else ``<save_dir>/<name>/<version>`` of the first logger, else ``trainer.default_root_dir``.
    A collective under DDP (rank 0's folder is broadcast): every rank must call it."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    if dirpath:
        folder = Path(dirpath).parent
    elif trainer.loggers and trainer.loggers[0].save_dir is not None:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        folder = Path(logger.save_dir) / str(logger.name) / version
    else:
        folder = Path(trainer.default_root_dir)
    return Path(trainer.strategy.broadcast(str(folder)))
