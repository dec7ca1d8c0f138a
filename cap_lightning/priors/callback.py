"""``PriorCacheCallback``: compute the training priors once, cache them on disk, attach them to the data.

Design decisions:
- Runs in ``setup("fit")``, after the data module's ``setup`` and before any weights of the trained model load.
- Cache key = sha256(prior.cache_key(), training-data fingerprint, label names, split setting, package version):
  any change of a prior argument, the data, the split or the package gives a new entry; ``overwrite=True`` forces
  a recompute. The data module's defaults for the prior (its ``teacher_prompt`` and ``label_names``, read
  duck-typed, None / empty when it has none) reach the prior through ``set_data_defaults`` before its key is read.
- Rows are computed in fixed-size chunks, each written atomically as soon as it is done: an interrupted run resumes
  from the chunks on disk. Under DDP, chunk ``i`` belongs to rank ``i % world_size``; after a barrier rank 0 merges
  the chunks into one file, and after a second barrier every rank reads it.
- Priors cover only what the student reads (``visible.py``): each prior gets the words within the data module's
  ``max_length`` tokens (``visible_word_counts``, duck-typed; all words without it), the rest get 0 and are never
  computed, with a warning counting the truncated texts. The truncation is part of the key when it cuts a text.
- Corrupted or truncated files are detected (``cache.load_priors``), deleted and recomputed, never used.
- Rank 0 decides hit or miss and broadcasts it, so all ranks take the same barriers. Prior computation runs
  under a forked RNG: the student trains identically on a cache hit and a cache miss.
- Two runs on one entry: rank 0 holds the entry's file lock (``lmcore.locks``, ``<key>.lock`` next to the folder)
  from the hit/miss decision until every rank has read the merged file. A second run waits (a warning says so),
  then reads the merged file as a cache hit. Chunk and temporary files are removed under the lock once the merged
  file exists, so no run deletes files another is writing and no stale chunk stays behind.
- The teacher's gold-label ranks (CAP diagnostics, saved next to the priors as ``diagnostics.json``; cache keys and
  the priors file unchanged) are attached with the priors when present (:func:`gold_ranks`), for ``CapModule``'s
  ``prior_mask='teacher_correct'``. Entries written before this existed have the same file, so they serve too.
- ``control`` (``controls.py``: ``uniform`` or ``shuffled``) replaces the attached priors by a control derived
  from them, after the cache (the cache holds the real prior; the key does not change), on the words the student
  reads.
- Known limit: a run waiting for the lock keeps its other DDP ranks at a barrier, within the process-group timeout.
- Known limit: an exception on one rank while computing leaves the others waiting at the barrier until the
  process-group timeout; the chunks it finished stay on disk for the next run.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from tqdm.auto import tqdm

from cap_lightning import __version__
from cap_lightning.priors.base import AttributionPrior
from cap_lightning.priors.cache import (
    MERGED,
    cache_key,
    chunk_path,
    chunk_starts,
    load_priors,
    remove_leftovers,
    save_priors,
)
from cap_lightning.priors.controls import PriorControl, control_priors
from cap_lightning.priors.visible import pad_to_words, truncation_warning, visible_texts
from cap_lightning.tokens import split_words
from lmcore.choices import check_choice
from lmcore.io import atomic_write_json
from lmcore.locks import entry_lock

DIAGNOSTICS = "diagnostics.json"


def summarise_diagnostics(path: Path) -> dict[str, float]:
    """Means of the per-example prior diagnostics saved next to the priors (teacher confidence, teacher accuracy as
    ``gold_rank == 0``, surrogate R²); empty when the prior has none."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out = {}
    for name, values in data.items():
        if not values:
            continue
        if name.endswith("gold_rank"):
            out[f"prior/{name.removesuffix('gold_rank')}teacher_acc"] = sum(v == 0 for v in values) / len(values)
        elif name.endswith(("gold_prob", "r2", "nonfinite")):
            out[f"prior/{name}_mean"] = sum(float(v) for v in values) / len(values)
    return out


def gold_ranks(path: Path, n_rows: int) -> list[int] | None:
    """The teacher's gold-label rank per training text from the diagnostics saved next to the priors (``gold_rank``,
    or ``<Source>/gold_rank`` of a hybrid's teacher sources; with several, the worst rank per text), or None when
    the prior stored none (not a teacher prior, or no diagnostics)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    columns = [v for k, v in data.items() if k == "gold_rank" or k.endswith("/gold_rank")]
    if not columns:
        return None
    for column in columns:
        if len(column) != n_rows or not all(isinstance(r, int) and r >= 0 for r in column):
            raise ValueError(f"{path}: gold_rank must hold {n_rows} non-negative integers; delete the file's folder")
    return [max(ranks) for ranks in zip(*columns)]


class PriorCacheCallback(L.Callback):
    """Compute attribution priors for the training split once per content hash and attach them.

    Args:
        prior: the prior source (``cap_lightning.IGPrior``, or any ``AttributionPrior``).
        cache_dir: root folder of the cache.
        chunk_size: rows per chunk file (the unit of resumption and of DDP sharding).
        overwrite: recompute even when a valid cache entry exists.
        control: ``none`` | ``uniform`` | ``shuffled``: train on the prior itself, or on a control derived from it
            (every word the student reads scored 1; the prior's scores permuted within each text), docs/cap.md §2.
        control_seed: seed of the ``shuffled`` permutations (one per training example, the same every epoch).
    """

    def __init__(
        self,
        prior: AttributionPrior,
        cache_dir: str = "cache/priors",
        chunk_size: int = 64,
        overwrite: bool = False,
        control: PriorControl = "none",
        control_seed: int = 0,
    ) -> None:
        check_choice("control", control, PriorControl)
        if not isinstance(prior, AttributionPrior):
            raise TypeError(f"prior must be an AttributionPrior, got {type(prior).__name__}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.prior = prior
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size
        self.overwrite = overwrite
        self.control, self.control_seed = control, control_seed
        self.last: dict[str, float | int | str | bool] = {}

    def visible_counts(self, datamodule) -> list[int]:
        """Words of each training text that the student reads (all of them when the data module cannot tell)."""
        texts = datamodule.prior_inputs()[0]
        counter = getattr(datamodule, "visible_word_counts", None)
        return counter(texts) if callable(counter) else [len(split_words(t)) for t in texts]

    def entry_dir(self, datamodule) -> Path:
        texts, _, fingerprint = datamodule.prior_inputs()
        names = list(getattr(datamodule, "label_names", []) or [])
        self.prior.set_data_defaults(teacher_prompt=getattr(datamodule, "teacher_prompt", None), label_names=names)
        labels = json.dumps(names)
        parts = [self.prior.cache_key(), fingerprint, labels, datamodule.setting, __version__]
        self._counts = self.visible_counts(datamodule)
        cut = [[i, c] for i, (t, c) in enumerate(zip(texts, self._counts)) if c < len(split_words(t))]
        if cut:  # the student's truncation changes those texts' priors (nothing changes for the others)
            parts.append(json.dumps(cut))
        return self.cache_dir / cache_key(*parts)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "attach_priors"):
            raise RuntimeError("PriorCacheCallback needs a data module with prior_inputs()/attach_priors()")
        texts, labels, _ = datamodule.prior_inputs()
        folder = self.entry_dir(datamodule)
        key = folder.name
        n_words = [len(split_words(t)) for t in texts]
        counts = self._counts  # set by entry_dir
        message = truncation_warning(counts, n_words, getattr(datamodule, "max_length", None))
        if message and trainer.is_global_zero:
            warnings.warn(message, stacklevel=2)
        self._visible = visible_texts(texts, counts)
        start = time.perf_counter()
        # rank 0 holds the entry's lock until every rank has read the merged file: a second run on the same entry
        # waits, then reads the first one's result; nobody deletes chunks another run is still writing
        lock = entry_lock(folder, "prior cache entry") if trainer.is_global_zero else nullcontext()
        with lock:
            trainer.strategy.barrier("prior_cache_locked")
            priors, hit = self._read_or_compute(trainer, datamodule, texts, labels, n_words, folder, key)
            trainer.strategy.barrier("prior_cache_read")
        seconds = time.perf_counter() - start
        self.last = {"cache_hit": hit, "seconds": seconds, "rows": len(priors), "path": str(folder / MERGED)}
        rank_zero_info(f"[priors] {len(priors)} priors ready in {seconds:.2f} s ({'cache hit' if hit else 'computed'})")
        ranks = gold_ranks(folder / DIAGNOSTICS, len(priors))
        priors = control_priors(priors, self.control, self.control_seed, counts)
        self.last |= {"control": self.control, "gold_ranks": ranks is not None}
        if ranks is None:
            datamodule.attach_priors(priors)
        else:
            datamodule.attach_priors(priors, gold_rank=ranks)
        summary = summarise_diagnostics(folder / DIAGNOSTICS)
        if summary:
            rank_zero_info("[priors] " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
        self.last |= summary
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(
                {"prior/cache_key": key, "prior/class": type(self.prior).__name__, "prior/control": self.control}
            )
            trainer.logger.log_metrics({"prior/cache_hit": float(hit), "prior/seconds": seconds, **summary})

    def _read_or_compute(self, trainer, datamodule, texts, labels, n_words, folder: Path, key: str):
        """``(priors, cache hit)``; called with the entry's lock held by rank 0."""
        if self.overwrite and trainer.is_global_zero:
            for stale in [folder / MERGED, *folder.glob("chunk-*.safetensors")]:
                stale.unlink(missing_ok=True)
        trainer.strategy.barrier("prior_cache_overwrite")
        # rank 0 decides hit or miss for everyone: ranks must take the same path through the barriers below
        priors = load_priors(folder / MERGED, key, 0, n_words) if trainer.is_global_zero else None
        hit = bool(trainer.strategy.broadcast(priors is not None, src=0))
        if hit and priors is None:
            priors = load_priors(folder / MERGED, key, 0, n_words)
        if hit and priors is None:
            raise RuntimeError(f"{folder / MERGED} was valid on rank 0 but not here: is the cache on a shared disk?")
        if hit:
            if trainer.is_global_zero:
                remove_leftovers(folder)  # e.g. chunks of a run that crashed after another one merged
            rank_zero_info(f"[priors] cache hit: {len(priors)} priors read from {folder / MERGED}")
            return priors, hit
        self._compute_missing(trainer, datamodule, texts, labels, n_words, folder, key)
        if trainer.is_global_zero:
            merged = []
            for s in chunk_starts(len(texts), self.chunk_size):
                rows = load_priors(chunk_path(folder, s), key, s, n_words[s : s + self.chunk_size])
                if rows is None:
                    raise RuntimeError(f"prior chunk {chunk_path(folder, s)} is missing or invalid after compute")
                merged.extend(rows)
            save_priors(folder / MERGED, merged, key, 0)
            remove_leftovers(folder)
            self._write_diagnostics(folder, self._visible, labels)
        trainer.strategy.barrier("prior_cache_merged")
        priors = load_priors(folder / MERGED, key, 0, n_words)
        if priors is None:
            raise RuntimeError(f"merged prior file {folder / MERGED} is missing or invalid")
        return priors, hit

    def _write_diagnostics(self, folder: Path, texts, labels) -> None:
        found = self.prior.diagnostics(texts, labels)
        if found:
            atomic_write_json(folder / DIAGNOSTICS, found, indent=None)

    def _compute_missing(self, trainer, datamodule, texts, labels, n_words, folder: Path, key: str) -> None:
        rank, world = trainer.global_rank, trainer.world_size
        mine = [s for s in chunk_starts(len(texts), self.chunk_size) if s // self.chunk_size % world == rank]
        todo = [s for s in mine if load_priors(chunk_path(folder, s), key, s, n_words[s : s + self.chunk_size]) is None]
        rank_zero_info(
            f"[priors] computing {type(self.prior).__name__} priors for {len(texts)} texts into {folder} "
            f"({len(mine) - len(todo)} of {len(mine)} chunks of rank 0 already on disk)"
        )
        if todo:
            # the prior's own randomness (reference head, fine-tune) must not shift the student's RNG stream:
            # a cache hit and a cache miss then train exactly the same student
            shown = self._visible  # what the student reads of each text; the rest gets prior 0
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
                self.prior.prepare(
                    shown,
                    labels,
                    datamodule.num_labels,
                    trainer.strategy.root_device,
                    label_names=getattr(datamodule, "label_names", None),
                )
                bar = tqdm(total=len(todo), desc=f"priors (rank {rank})", disable=rank != 0, unit="chunk")
                for s in todo:
                    rows = self.prior(shown[s : s + self.chunk_size], labels[s : s + self.chunk_size])
                    rows = pad_to_words(rows, n_words[s : s + self.chunk_size])
                    save_priors(chunk_path(folder, s), rows, key, s)
                    bar.update(1)
                bar.close()
                self.prior.release()
        trainer.strategy.barrier("prior_cache_chunks")
