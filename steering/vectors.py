"""Steering vectors: aggregation of per-layer activation deltas, and the saved ``SteeringVector`` artefact.

Design decisions (vs the released code, docs/grains.md §2.5 and §2.11 #11):
- ``pca`` is the first principal component of the centred deltas, unit norm, **oriented** so ⟨PC1, mean δ⟩ > 0; the
  release used sklearn's arbitrary sign, so ``mode=both`` could cancel or invert. ``pca_uncentred`` (PCA on the
  paired differences, repeng style) and ``mean`` are the alternatives.
- ``mode=both`` is v = u⁺ − u⁻ (no renormalisation); ``pos`` is v = u⁺.
- Saved as safetensors only (never pickle): tensors ``layer.{i}`` plus JSON provenance metadata. Loading onto a
  model with another hidden size or layer count raises ``ValueError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lmcore.choices import check_choice, choices
from lmcore.tensor_files import check_finite, load_tensors, save_tensors
from steering.layers import find_decoder_layers, model_hidden_size

Aggregate = Literal["pca", "pca_uncentred", "mean"]
AGGREGATES = choices(Aggregate)
Mode = Literal["pos", "both"]
MODES = choices(Mode)
FORMAT = "cap_lightning.steering.v1"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cap-lightning")
    except PackageNotFoundError:
        return "0.1.0+src"


def aggregate_deltas(deltas: torch.Tensor, aggregate: Aggregate = "pca") -> torch.Tensor:
    """One direction (d,) from deltas (N, d): oriented unit PC1 (``pca``, ``pca_uncentred``) or the ``mean``."""
    check_choice("aggregate", aggregate, Aggregate)
    if deltas.ndim != 2 or deltas.shape[0] == 0:
        raise ValueError(f"deltas must have shape (N >= 1, d), got {tuple(deltas.shape)}")
    x = deltas.double()
    mean = x.mean(0)  # (d,)
    if aggregate == "mean":
        return mean.float()
    centred = x - mean if aggregate == "pca" else x
    if centred.norm() <= 1e-12 * max(1.0, float(x.norm())):  # one row, or identical rows: PC1 is undefined
        v = mean
    else:
        v = torch.linalg.svd(centred, full_matrices=False).Vh[0]  # (d,)
    if torch.dot(v, mean) < 0:
        v = -v
    return (v / v.norm().clamp_min(1e-12)).float()


def build_steering_vector(
    deltas_pos: torch.Tensor,
    deltas_neg: torch.Tensor | None,
    layers: Sequence[int],
    aggregate: Aggregate = "pca",
    mode: Mode = "both",
    metadata: Mapping[str, Any] | None = None,
) -> SteeringVector:
    """Per-layer vectors from deltas (N, L, d) at ``layers`` (L indices): u⁺ (``pos``) or u⁺ − u⁻ (``both``)."""
    check_choice("mode", mode, Mode)
    check_choice("aggregate", aggregate, Aggregate)
    if deltas_pos.ndim != 3 or deltas_pos.shape[1] != len(layers):
        raise ValueError(f"deltas_pos must be (N, {len(layers)}, d) for layers {list(layers)}, got "
                         f"{tuple(deltas_pos.shape)}")  # fmt: skip
    if mode == "both" and (deltas_neg is None or deltas_neg.shape != deltas_pos.shape):
        raise ValueError("mode 'both' needs deltas_neg with the same shape as deltas_pos")
    vectors = {}
    for i, layer in enumerate(layers):
        v = aggregate_deltas(deltas_pos[:, i], aggregate)
        if mode == "both":
            v = v - aggregate_deltas(deltas_neg[:, i], aggregate)
        vectors[int(layer)] = v
    built = {"aggregate": aggregate, "mode": mode, "layers": [int(x) for x in layers], "n_examples": len(deltas_pos)}
    meta = {**(metadata or {}), **built}  # what this vector was built with wins over carried provenance
    return SteeringVector(vectors, meta)


def _by_layer(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``layer.{i}`` tensors keyed ``layer {i}``, for messages."""
    return {k.replace(".", " ", 1): v for k, v in tensors.items()}


@dataclass(frozen=True)
class SteeringVector:
    """Per-layer steering directions plus provenance.

    Attributes:
        vectors: layer index (0-based, as in ``find_decoder_layers``) → (d,) fp32 direction.
        metadata: JSON-serialisable provenance (model id/revision, tokenizer hash, hook point, dtype, objective, k,
            steps, layers, aggregate, mode, data hash, package version, ``hidden_size``, ``num_layers``, …).
    """

    vectors: dict[int, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.vectors:
            raise ValueError("a SteeringVector needs at least one layer vector")
        sizes = {tuple(v.shape) for v in self.vectors.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise ValueError(f"layer vectors must all have the same shape (d,), got {sorted(sizes)}")

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def summary_metadata(self) -> dict[str, Any]:
        """JSON-safe metadata without the split row ids: what a run logs to its logger's config."""
        return json.loads(json.dumps({k: v for k, v in self.metadata.items() if k != "splits"}, default=str))

    def with_metadata(self, **extra: Any) -> SteeringVector:
        return SteeringVector(dict(self.vectors), {**self.metadata, **extra})

    def check_compatible(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if ``model``'s hidden size, layer count or layer range does not fit this vector."""
        d = model_hidden_size(model)
        n = len(find_decoder_layers(model))
        name = type(model).__name__
        if d != self.hidden_size:
            raise ValueError(f"steering vector has hidden size {self.hidden_size}, but {name} has hidden size {d}")
        expected = self.metadata.get("num_layers")
        if expected is not None and int(expected) != n:
            raise ValueError(f"steering vector was fit on a model with {expected} layers, but {name} has {n}")
        bad = [layer for layer in self.layers if not 0 <= layer < n]
        if bad:
            raise ValueError(f"steering vector layers {bad} are out of range for {name} with {n} layers")

    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file atomically (tensors ``layer.{i}``, metadata as JSON strings, sorted header).

        Refuses (``ValueError``) a vector with NaN / inf entries.
        """
        tensors = {f"layer.{i}": v.detach().float().cpu() for i, v in sorted(self.vectors.items())}
        fix = "refusing to write it: check the deltas it was built from (e.g. fp16 overflow) and re-run predict"
        check_finite(_by_layer(tensors), f"steering vector for {path}", fix)
        meta = {"format": FORMAT, "metadata": json.dumps(self.metadata, sort_keys=True, default=str)}
        return save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None, tokenizer=None) -> SteeringVector:
        """Read a file written by ``save``; with ``model``, also ``check_compatible(model)``; with ``tokenizer``,
        refuse a vector whose stored ``tokenizer_hash`` is another tokenizer's.

        Only safetensors files are read (a pickle / ``torch.save`` file is refused unopened); NaN / inf are refused.
        """
        tensors, header = load_tensors(path)
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a steering vector file (format {header.get('format')!r}, "
                             f"expected {FORMAT!r})")  # fmt: skip
        check_finite(
            _by_layer(tensors), str(path), "the file is corrupt or was written from NaN deltas: re-run predict"
        )
        vectors = {int(k.split(".", 1)[1]): v for k, v in tensors.items()}
        vector = cls(vectors, json.loads(header.get("metadata", "{}")))
        if tokenizer is not None:
            from steering.pairs import tokenizer_hash

            stored, have = vector.metadata.get("tokenizer_hash"), tokenizer_hash(tokenizer)
            if stored is not None and stored != have:
                raise ValueError(f"{path} was fit with tokenizer hash {stored}, but this {type(tokenizer).__name__} "
                                 f"hashes to {have}: its token ids mean other tokens; re-run predict with this model "
                                 "and tokenizer")  # fmt: skip
        if model is not None:
            vector.check_compatible(model)
        return vector
