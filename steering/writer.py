"""``SteeringVectorWriter``: gathers per-example deltas from every rank and writes the ``SteeringVector`` once.

Design decisions (docs/design.md "rank-safe writing"):
- Each predict step returns ``{"index": (B,), "layers": [...], "deltas": {k: (pos, neg)}}``; the writer keeps them
  per rank, then ``all_gather_object`` collects them on every rank. Rows are de-duplicated by dataset index and
  sorted by it, so N examples give exactly N deltas and the same vector on any number of ranks; a count other than
  the steering-set size is an error.
- Rank 0 writes; every file goes to a temporary sibling first and is renamed into place (atomic on POSIX). Then a
  barrier, so no rank reads a half-written vector.
- Besides the vector (``vector_path``, safetensors) it writes ``<stem>.deltas.safetensors`` (all k, all extraction
  layers: what a layer × α × k sweep needs, no recomputation) and ``<stem>.splits.json`` (the split record).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


def atomic_write(path: Path, write) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def deltas_path(vector_path: str | Path) -> Path:
    p = Path(vector_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".deltas.safetensors")


def splits_path(vector_path: str | Path) -> Path:
    p = Path(vector_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".splits.json")


def merge_predictions(predictions: list[dict[str, Any]], expected: int | None = None) -> dict[str, Any]:
    """De-duplicate by index, sort by index; returns ``{"index", "layers", "deltas": {k: (pos, neg)}}``."""
    if not predictions:
        raise ValueError("no predictions to merge: the steering set is empty")
    index = torch.cat([torch.as_tensor(p["index"]).cpu() for p in predictions])
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    rows = order[keep]
    if expected is not None and int(keep.sum()) != expected:
        raise ValueError(f"gathered {int(keep.sum())} distinct steering examples, expected {expected}")
    deltas = {}
    for k in predictions[0]["deltas"]:
        pos = torch.cat([p["deltas"][k][0] for p in predictions])[rows]
        negs = [p["deltas"][k][1] for p in predictions]
        neg = None if negs[0] is None else torch.cat(negs)[rows]
        deltas[k] = (pos, neg)
    return {"index": sorted_index[keep], "layers": predictions[0]["layers"], "deltas": deltas}


def save_deltas(path: Path, merged: dict[str, Any], metadata: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    tensors = {"index": merged["index"].contiguous()}
    for k, (pos, neg) in merged["deltas"].items():
        tensors[f"k{k}.pos"] = pos.float().contiguous()
        if neg is not None:
            tensors[f"k{k}.neg"] = neg.float().contiguous()
    meta = {"layers": json.dumps(merged["layers"]), "metadata": json.dumps(metadata, default=str, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_deltas(path: str | Path) -> tuple[list[int], dict[int, tuple[torch.Tensor, torch.Tensor | None]], dict]:
    """(layers, {k: (pos (N, R, L, d), neg or None)}, metadata) from a file written by ``save_deltas``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    ks = sorted({int(key.split(".")[0][1:]) for key in tensors if key.startswith("k")})
    deltas = {k: (tensors[f"k{k}.pos"], tensors.get(f"k{k}.neg")) for k in ks}
    return json.loads(header["layers"]), deltas, json.loads(header.get("metadata", "{}"))


class SteeringVectorWriter(BasePredictionWriter):
    """Collects predict-step deltas, and at the end of ``predict`` writes vector, deltas and split record."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self._predictions: list[dict[str, Any]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._predictions = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self._predictions.append(prediction)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gathered = [self._predictions]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self._predictions)
        flat = [p for rank in gathered for p in rank]
        expected = len(trainer.predict_dataloaders.dataset)
        merged = merge_predictions(flat, expected)
        if trainer.is_global_zero:
            pl_module.write_vector(merged, trainer.datamodule)
        trainer.strategy.barrier("steering_vector_written")
        self._predictions = []
