"""The files a steering run writes: ``SteeringVectorWriter`` (predict) and ``SteeringResultsWriter`` (test).

``SteeringModule.configure_callbacks`` adds both; the module computes (deltas, metrics) and never writes a file.

Design decisions (docs/design.md "rank-safe writing"):
- Each predict step returns ``{"index": (B,), "layers": [...], "deltas": {k: (pos, neg)}}``; the writer keeps them
  per rank, then ``all_gather_object`` collects them on every rank. Rows are de-duplicated by dataset index and
  sorted by it, so N examples give exactly N deltas and the same vector on any number of ranks; a count other than
  the steering-set size is an error.
- Rank 0 writes; every file goes to a temporary sibling first and is renamed into place (atomic on POSIX). Then a
  barrier, so no rank reads a half-written vector.
- Besides the vector (``vector_path``, safetensors) it writes ``<stem>.deltas.safetensors`` (all k, all extraction
  layers: what a layer × α × k sweep needs, no recomputation) and ``<stem>.splits.json`` (the split record). The
  vector is built here (``vector_from_deltas`` with the module's method and settings); the module supplies its
  provenance (``vector_provenance``: model, tokenizer, data, extraction settings).
- Resume (a killed ``predict`` restarts where it stopped): after every predict batch the writer saves that batch's
  prediction atomically to ``<stem>.parts/<key[:16]>/part-<first>-<last>-<h>.safetensors`` (``DeltaParts``; the
  name holds the batch's first and last dataset index and a hash of all of them, so ranks never collide; tensors in
  their own dtype, so a resumed run is bit-equal). The key is the sha256 of everything that changes the deltas
  (``SteeringModule.extraction_key``: model path, class, revision, config and a weight fingerprint, tokenizer hash,
  method, every ``GrainsConfig`` field, layers, the k list, dtype, package and torch versions); the folder holds it
  in ``key.json``, and each part holds it, its exact indices and the hash of its batch's texts (``pairs_hash``), so
  another setting, another split or other data never reuses a part. ``SteeringModule.predict_step`` returns a part
  that matches the batch exactly instead of running the model; an unreadable or mismatching part is ignored with a
  warning naming it, recomputed and overwritten. After the vector is written and every rank has passed the barrier,
  rank 0 removes the key folder (and ``<stem>.parts`` when nothing else is left in it).
- The IG convergence gate (``grains.max_completeness_error``): predictions carry each example's completeness error
  (saved in the parts too); after merging, ``apply_gate`` (``steering.completeness_gate``, the function the library
  uses) drops the examples above the bound from the vector **and from the deltas file** (so a sweep refits what the
  vector was fit from), and the metadata records ``completeness_gate`` and ``ig_completeness_mean_abs_error``.
- ``SteeringResultsWriter`` writes ``<stem>.test.json`` (metrics, α, vector metadata, split record, every
  metric's per-example values keyed by split index, and the continuations of continuation tasks) from rank 0 at
  the end of ``test``, after the module has computed ``test_results``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_info

from lmcore.io import atomic_write_json
from lmcore.tensor_files import load_tensors, save_tensors
from steering.completeness_gate import apply_gate, gate_warning
from steering.extract import effective_top_k
from steering.fitting import vector_from_deltas
from steering.pairs import ContrastivePair
from steering.vectors import SteeringVector


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


def results_path(vector_path: str | Path) -> Path:
    p = Path(vector_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".test.json")


def parts_root(vector_path: str | Path) -> Path:
    p = Path(vector_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".parts")


class DeltaParts:
    """One predict batch per file under ``<vector stem>.parts/<key[:16]>/``, for resuming an interrupted predict.

    ``key`` is the full sha256 of ``key_fields`` (everything that changes the deltas); see the module docstring.
    """

    def __init__(self, vector_path: str | Path, key_fields: dict[str, Any]) -> None:
        self.key_fields = key_fields
        self.key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()
        self.root = parts_root(vector_path)
        self.folder = self.root / self.key[:16]

    def path(self, indices: Sequence[int]) -> Path:
        h = hashlib.sha256(json.dumps(list(indices)).encode()).hexdigest()[:8]
        return self.folder / f"part-{indices[0]}-{indices[-1]}-{h}.safetensors"

    def load(self, indices: Sequence[int], batch_hash: str) -> dict[str, Any] | None:
        """The saved prediction of exactly these dataset indices (and texts), or None (then the batch is computed)."""
        indices = [int(i) for i in indices]
        path = self.path(indices)
        if not path.is_file():
            return None
        try:
            tensors, meta = load_tensors(path)
            why = None
            if meta.get("key") != self.key:
                why = f"its key {meta.get('key', '(none)')[:16]} is not this run's {self.key[:16]}"
            elif meta.get("batch_hash") != batch_hash:
                why = "its examples are not this batch's (the data or split changed)"
            elif tensors["index"].tolist() != indices:
                why = f"its indices {tensors['index'].tolist()} are not the batch's {indices}"
            if why is None:
                deltas = {int(k): (tensors[f"k{k}.pos"], tensors.get(f"k{k}.neg")) for k in json.loads(meta["ks"])}
                saved = {"index": tensors["index"], "layers": json.loads(meta["layers"]), "deltas": deltas,
                         "batch_hash": batch_hash, "resumed": True}  # fmt: skip
                for name in ("k_used", "completeness_error"):
                    if name in tensors:
                        saved[name] = tensors[name]
                return saved
        except Exception as err:  # noqa: BLE001 - any unreadable part is recomputed
            why = f"it is unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"ignoring saved predict part {path}: {why}; recomputing that batch", stacklevel=2)
        return None

    def save(self, prediction: dict[str, Any]) -> Path:
        """Write one batch's prediction (and ``key.json`` once) atomically."""
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            atomic_write_json(key_file, {"key": self.key, "fields": self.key_fields}, default=str, sort_keys=True)
        index = torch.as_tensor(prediction["index"]).cpu()
        tensors = {"index": index}
        for name in ("k_used", "completeness_error"):
            if prediction.get(name) is not None:
                tensors[name] = prediction[name]
        for k, (pos, neg) in prediction["deltas"].items():
            tensors[f"k{k}.pos"] = pos
            if neg is not None:
                tensors[f"k{k}.neg"] = neg
        meta = {"key": self.key, "batch_hash": prediction["batch_hash"], "layers": json.dumps(prediction["layers"]),
                "ks": json.dumps([int(k) for k in prediction["deltas"]])}  # fmt: skip
        return save_tensors(self.path(index.tolist()), tensors, meta)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.root.rmdir()  # only when no other key's parts are left
        except OSError:
            pass


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
    merged = {"index": sorted_index[keep], "layers": predictions[0]["layers"], "deltas": deltas}
    for name in ("k_used", "completeness_error"):
        if all(p.get(name) is not None for p in predictions):
            merged[name] = torch.cat([p[name] for p in predictions])[rows]
    return merged


def keep_rows(merged: dict[str, Any], kept: torch.Tensor) -> dict[str, Any]:
    """``merged`` restricted to the examples where ``kept`` (N,) is True (deltas, index and per-example tensors)."""
    out = {**merged, "index": merged["index"][kept]}
    out["deltas"] = {k: (pos[kept], None if neg is None else neg[kept]) for k, (pos, neg) in merged["deltas"].items()}
    for name in ("k_used", "completeness_error"):
        if name in merged:
            out[name] = merged[name][kept]
    return out


def save_deltas(path: Path, merged: dict[str, Any], metadata: dict[str, Any]) -> Path:
    tensors = {"index": merged["index"].contiguous()}
    for k, (pos, neg) in merged["deltas"].items():
        tensors[f"k{k}.pos"] = pos.float().contiguous()
        if neg is not None:
            tensors[f"k{k}.neg"] = neg.float().contiguous()
    meta = {"layers": json.dumps(merged["layers"]), "metadata": json.dumps(metadata, default=str, sort_keys=True)}
    return save_tensors(path, tensors, meta)


def load_deltas(path: str | Path) -> tuple[list[int], dict[int, tuple[torch.Tensor, torch.Tensor | None]], dict]:
    """(layers, {k: (pos (N, R, L, d), neg or None)}, metadata) from a file written by ``save_deltas``."""
    tensors, header = load_tensors(path)
    ks = sorted({int(key.split(".")[0][1:]) for key in tensors if key.startswith("k")})
    deltas = {k: (tensors[f"k{k}.pos"], tensors.get(f"k{k}.neg")) for k in ks}
    return json.loads(header["layers"]), deltas, json.loads(header.get("metadata", "{}"))


class SteeringVectorWriter(BasePredictionWriter):
    """Collects predict-step deltas, and at the end of ``predict`` builds the vector and writes vector, deltas and
    split record.

    Reads from the module: ``hparams`` (``method``, ``aggregate``, ``mode``, ``unit_norm``, ``vector_path``),
    ``top_ks`` (the first is the vector's k) and ``vector_provenance(pairs, splits)``.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self._predictions: list[dict[str, Any]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._predictions = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        parts = getattr(pl_module, "delta_parts", None)
        if parts is not None and not prediction.get("resumed") and "batch_hash" in prediction:
            parts.save(prediction)  # before the next batch: a kill loses at most the batch in flight
        self._predictions.append(prediction)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gathered = [self._predictions]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self._predictions)
        flat = [p for rank in gathered for p in rank]
        dataset = trainer.predict_dataloaders.dataset
        merged = merge_predictions(flat, len(dataset))
        if trainer.is_global_zero:
            pairs = [dataset[i]["example"].to_pair() for i in range(len(dataset))]
            dm = trainer.datamodule
            self.write(pl_module, merged, pairs, dm.split_record() if hasattr(dm, "split_record") else None)
        trainer.strategy.barrier("steering_vector_written")
        parts = getattr(pl_module, "delta_parts", None)
        if trainer.is_global_zero and parts is not None:
            parts.remove()  # every rank has passed the barrier: no rank reads or writes a part any more
        self._predictions = []

    def write(
        self, pl_module: L.LightningModule, merged: dict[str, Any], pairs: list[ContrastivePair], splits: dict | None
    ) -> SteeringVector:
        """Build the vector from merged deltas; write vector, deltas and split record atomically (rank 0 only)."""
        hp = pl_module.hparams
        meta = pl_module.vector_provenance(pairs, splits) if pairs else {}
        meta["n_examples_gathered"] = int(merged["index"].numel())
        errors = merged.get("completeness_error")
        if errors is not None and bool(torch.isfinite(errors).any()):  # as fit_vector records it
            meta["ig_completeness_mean_abs_error"] = float(errors[torch.isfinite(errors)].abs().mean())
        grains = getattr(pl_module, "grains", None)
        threshold = None if grains is None else grains.max_completeness_error
        kept, record = apply_gate(errors, threshold, merged["index"].tolist())
        if record is not None:  # the deltas file holds the kept examples only, so a sweep fits what the vector fits
            meta["completeness_gate"] = record
            if record["n_dropped"]:
                warnings.warn(gate_warning(record), stacklevel=2)
            merged = keep_rows(merged, kept)
        if "k_used" in merged:  # the text k each delta row actually used, as the library path records it
            meta["effective_top_k"] = effective_top_k(pl_module.top_ks[0], merged["k_used"].flatten().tolist())
        pos, neg = merged["deltas"][pl_module.top_ks[0]]
        vector = vector_from_deltas(hp.method, pos, neg, merged["layers"], hp.aggregate, hp.mode, hp.unit_norm, meta)
        path = Path(hp.vector_path)
        atomic_write(path, vector.save)
        save_deltas(deltas_path(path), merged, {**meta, "method": hp.method, "aggregate": hp.aggregate,
                                                "mode": hp.mode})  # fmt: skip
        if splits is not None:
            atomic_write(splits_path(path), lambda tmp: tmp.write_text(json.dumps(splits, indent=2)))
        rank_zero_info(f"steering vector ({hp.method}, layers {vector.layers}, {meta['n_examples_gathered']} "
                       f"examples) written to {path}")  # fmt: skip
        if pl_module.logger is not None:
            pl_module.logger.log_hyperparams({"steering_vector": vector.summary_metadata()})
        return vector


class SteeringResultsWriter(Callback):
    """Writes ``<vector stem>.test.json`` (metrics, α, vector metadata, split record) at the end of ``test``.

    Reads from the module: ``test_results`` (set in its ``on_test_epoch_end``), ``vector`` and ``hparams``
    (``alpha``, ``alpha_unit``, ``steer_layers``, ``vector_path``).
    """

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        hp, vector, dm = pl_module.hparams, pl_module.vector, trainer.datamodule
        record = {
            "metrics": pl_module.test_results, "per_example": getattr(pl_module, "test_per_example", None),
            "alpha": hp.alpha, "alpha_unit": hp.alpha_unit, "steer_layers": hp.steer_layers,
            "vector_path": str(hp.vector_path), "vector_layers": vector.layers,
            "vector_metadata": vector.metadata, "method": vector.metadata.get("method"),
            "eval_split": getattr(dm, "hparams", {}).get("eval_split") if dm is not None else None,
            "splits": dm.split_record() if hasattr(dm, "split_record") else None,
            "continuations": getattr(pl_module, "test_continuations", None) or None,
        }  # fmt: skip
        atomic_write(
            results_path(hp.vector_path), lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=str))
        )
