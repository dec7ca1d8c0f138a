"""GrAInS steering without Lightning: fit per-layer steering vectors from contrastive triples, apply them in a block.

    vector = fit_steering_vector(model, tokenizer, pairs, layers=[-4, -3])   # IG → top-k → masked deltas → PCA
    vector.save("vectors.safetensors")
    with steer(model, vector, alpha=4.0):                                    # per-token norm-preserving hooks
        model.generate(...)

Every public name is imported lazily (on first attribute access), so ``import steering`` loads neither torch nor
Lightning. The Lightning layer is ``SteeringModule``, ``SteeringDataModule`` and the writers (``lightning predict``
then ``lightning test``); methods (GrAInS, the controls, CAA, PCA) are listed once in ``steering.methods``.

Canonical defaults follow docs/grains.md §6.5; the released code's numerics are reachable only through labelled legacy
options (``objective="legacy_off_by_one"``, ``normalize="legacy_seq_axis"``, ``mask="pad_id"``).
"""

from __future__ import annotations

from lmcore.exports import lazy_exports

_EXPORTS = {
    "states_at": "steering.activations",
    "ContrastiveAttribution": "steering.attribution",
    "EmbeddedTriple": "steering.attribution",
    "contrastive_ig": "steering.attribution",
    "contrastive_ig_embeds": "steering.attribution",
    "fit_all_tokens_vector": "steering.baselines",
    "fit_caa_vector": "steering.baselines",
    "fit_pca_vector": "steering.baselines",
    "fit_random_k_vector": "steering.baselines",
    "PaddedBatch": "lmcore.padding",
    "pad_batch": "lmcore.padding",
    "SteeringDataModule": "steering.data",
    "Extraction": "steering.extract",
    "GrainsConfig": "steering.extract",
    "extract_deltas": "steering.extract",
    "provenance": "steering.extract",
    "fit_steering_vector": "steering.fitting",
    "fit_vector": "steering.fitting",
    "export_gguf": "steering.gguf_export",
    "load_gguf": "steering.gguf_export",
    "capture_layer_outputs": "steering.hooks",
    "steer": "steering.hooks",
    "steered_hidden": "steering.hooks",
    "find_decoder_layers": "steering.layers",
    "model_hidden_size": "steering.layers",
    "resolve_layers": "steering.layers",
    "mask_positions": "steering.masking",
    "random_positions": "steering.masking",
    "replacement_embedding": "steering.masking",
    "top_k_positions": "steering.masking",
    "METHODS": "steering.methods",
    "SteeringMethod": "steering.methods",
    "SteeringModule": "steering.module",
    "ContrastivePair": "steering.pairs",
    "embed_inputs": "steering.pairs",
    "encode_pair": "steering.pairs",
    "image_token_mask": "steering.pairs",
    "response_logprob_from_logits": "steering.scoring",
    "score_responses": "steering.scoring",
    "SteeringVector": "steering.vectors",
    "aggregate_deltas": "steering.vectors",
    "build_steering_vector": "steering.vectors",
    "SteeringResultsWriter": "steering.writer",
    "SteeringVectorWriter": "steering.writer",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
