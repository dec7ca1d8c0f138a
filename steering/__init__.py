"""GrAInS steering without Lightning: fit per-layer steering vectors from contrastive triples, apply them in a block.

    vector = fit_steering_vector(model, tokenizer, pairs, layers=[-4, -3])   # IG → top-k → masked deltas → PCA
    vector.save("vectors.safetensors")
    with steer(model, vector, alpha=4.0):                                    # per-token norm-preserving hooks
        model.generate(...)

The Lightning layer (``SteeringModule``, ``SteeringDataModule``, ``SteeringVectorWriter``; ``lightning predict`` then
``lightning test``) is imported lazily, so ``import steering`` does not load Lightning.

Canonical defaults follow docs/grains.md §6.5; the released code's numerics are reachable only through labelled legacy
options (``objective="legacy_off_by_one"``, ``normalize="legacy_seq_axis"``, ``mask="pad_id"``).
"""

from lmcore.padding import PaddedBatch, pad_batch
from steering.activations import states_at
from steering.attribution import (
    ContrastiveAttribution,
    EmbeddedTriple,
    contrastive_ig,
    contrastive_ig_embeds,
    ig_quadrature,
)
from steering.baselines import fit_all_tokens_vector, fit_caa_vector, fit_pca_vector, fit_random_k_vector
from steering.extract import Extraction, GrainsConfig, extract_deltas, fit_steering_vector, provenance
from steering.gguf_export import export_gguf, load_gguf
from steering.hooks import capture_layer_outputs, steer, steered_hidden
from steering.layers import find_decoder_layers, model_hidden_size, resolve_layers
from steering.masking import mask_positions, random_positions, replacement_embedding, top_k_positions
from steering.pairs import ContrastivePair, embed_inputs, encode_pair, image_token_mask
from steering.scoring import response_logprob_from_logits, score_responses
from steering.vectors import SteeringVector, aggregate_deltas, build_steering_vector

_LAZY = {
    "SteeringModule": "steering.module",
    "SteeringDataModule": "steering.data",
    "SteeringVectorWriter": "steering.writer",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'steering' has no attribute {name!r}")


__all__ = [
    "ContrastiveAttribution",
    "ContrastivePair",
    "EmbeddedTriple",
    "Extraction",
    "GrainsConfig",
    "PaddedBatch",
    "SteeringDataModule",
    "SteeringModule",
    "SteeringVector",
    "SteeringVectorWriter",
    "aggregate_deltas",
    "build_steering_vector",
    "capture_layer_outputs",
    "contrastive_ig",
    "contrastive_ig_embeds",
    "embed_inputs",
    "encode_pair",
    "export_gguf",
    "extract_deltas",
    "find_decoder_layers",
    "fit_all_tokens_vector",
    "fit_caa_vector",
    "fit_pca_vector",
    "fit_random_k_vector",
    "fit_steering_vector",
    "ig_quadrature",
    "image_token_mask",
    "load_gguf",
    "mask_positions",
    "model_hidden_size",
    "pad_batch",
    "provenance",
    "random_positions",
    "replacement_embedding",
    "resolve_layers",
    "response_logprob_from_logits",
    "score_responses",
    "states_at",
    "steer",
    "steered_hidden",
    "top_k_positions",
]
