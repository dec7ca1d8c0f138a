"""Export a trained ``CapModule`` checkpoint as a plain Hugging Face classifier folder (model + tokenizer).

    python -m cap_lightning.export --ckpt runs/sst2_judge/checkpoints/best.ckpt --out runs/sst2_judge/model

Design decisions:
- The folder is what ``AutoModelForSequenceClassification.from_pretrained`` (and ``lmcore.models.load_classifier``)
  loads, so another package (e.g. ``steering``'s sentiment judge) uses the classifier without importing
  ``cap_lightning``. The tokenizer is the one the checkpoint was trained with (its ``model_path``).
- ``id2label`` / ``label2id`` come from the data's label names when they are known: ``--label-names`` if given, else
  the checkpoint's data-module hyper-parameters (the built-in dataset's fixed label order, or ``custom.label_names``;
  a built-in dataset whose order lives in its files is read from its ``data_dir``). When none can be found the
  folder keeps the generic ``LABEL_i`` names and a warning says so.
- The checkpoint is read weights-only (``read_checkpoint``, ``CapModule.load_from_checkpoint``): a pickle payload is
  refused, never run. Every bad path is an error naming it, raised before any weights load.
- Written to a temporary sibling folder, then renamed into place: a reader never sees half a folder. An existing
  ``--out`` is replaced only with ``--overwrite`` (the old folder is moved aside first and removed after the rename).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cap_lightning.classifier import read_checkpoint

FIXED_LABELS = {"sst2": "SST2_LABELS", "emotion": "EMOTION_LABELS"}  # built-in datasets whose order is a constant


def checkpoint_label_names(checkpoint: dict[str, Any]) -> list[str] | None:
    """The label names of the data a checkpoint was trained on, from its data-module hyper-parameters; None when
    the checkpoint does not say (no data module saved) or the data cannot be read."""
    from cap_lightning.datasets import labels

    data = checkpoint.get("datamodule_hyper_parameters") or {}
    dataset = data.get("dataset")
    if dataset is None:
        return None
    if dataset in FIXED_LABELS:
        return list(getattr(labels, FIXED_LABELS[dataset]))
    custom = data.get("custom") or {}
    if custom.get("label_names"):
        return [str(n) for n in custom["label_names"]]
    try:  # the order is in the dataset's own files (e.g. banking77's categories.json)
        from cap_lightning.datasets.load import load_splits

        return list(load_splits(dataset, data.get("data_dir")).label_names)
    except (OSError, ValueError, ImportError) as e:
        warnings.warn(f"label names of dataset {dataset!r} could not be read ({e}); pass --label-names", stacklevel=2)
        return None


def _check_paths(ckpt: Path, out: Path, overwrite: bool) -> None:
    if not ckpt.exists():
        raise FileNotFoundError(f"checkpoint {str(ckpt)!r} does not exist; train one first (lightning fit ...)")
    if not ckpt.is_file():
        raise ValueError(f"checkpoint {str(ckpt)!r} is not a file (expected a CapModule .ckpt)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"output folder {str(out)!r} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} exists and is not a folder")
    if out.resolve() == ckpt.resolve().parent or out.resolve() in ckpt.resolve().parents:
        raise ValueError(f"output folder {str(out)!r} holds the checkpoint {str(ckpt)!r}; export somewhere else")


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, old / out.name)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_classifier(
    ckpt: str | os.PathLike, out: str | os.PathLike, label_names: Sequence[str] | None = None, overwrite: bool = False
) -> Path:
    """Write the classifier of CapModule checkpoint ``ckpt`` and its tokenizer to the HF folder ``out``.

    Raises:
        FileNotFoundError: ``ckpt`` does not exist.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        ValueError: ``ckpt`` is not a CapModule checkpoint (or holds code), or ``label_names`` does not match its
            label count or repeats a name.
    """
    ckpt, out = Path(ckpt).expanduser(), Path(out).expanduser()
    _check_paths(ckpt, out, overwrite)
    checkpoint = read_checkpoint(ckpt, mmap=True)
    hparams = checkpoint.get("hyper_parameters") or {}
    if not hparams.get("num_labels") or not hparams.get("model_path"):
        raise ValueError(f"{ckpt}: not a CapModule checkpoint (hyper_parameters lack num_labels/model_path)")
    num_labels = int(hparams["num_labels"])
    names = list(label_names) if label_names is not None else checkpoint_label_names(checkpoint)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != num_labels:
            raise ValueError(f"{len(names)} label names {names} for the {num_labels} outputs of {ckpt}")
        if len(set(names)) != len(names):
            raise ValueError(f"label names must be unique, got {names}")
    else:
        warnings.warn(f"{ckpt}: label names unknown; the folder keeps LABEL_0..LABEL_{num_labels - 1}", stacklevel=2)
    del checkpoint

    from cap_lightning.module import CapModule
    from lmcore.models import load_tokenizer

    model = CapModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).model.eval()
    tokenizer = load_tokenizer(hparams["model_path"])
    if names is not None:
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {n: i for i, n in enumerate(names)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cap_lightning.export", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="CapModule checkpoint (.ckpt), e.g. <run>/checkpoints/best.ckpt")
    p.add_argument("--out", required=True, help="HF folder to write (model + tokenizer)")
    p.add_argument("--label-names", nargs="+", default=None,
                   help="label names in id order (default: from the checkpoint's data)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a = p.parse_args(argv)
    try:
        out = export_classifier(a.ckpt, a.out, a.label_names, a.overwrite)
    except (OSError, ValueError) as e:  # a bad path or checkpoint: one line naming it, exit status 2
        p.error(str(e))
    print(f"classifier of {a.ckpt} written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
