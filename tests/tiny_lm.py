"""Tiny random causal LMs and VLMs built in code (hidden size <= 32, < 1 s each, no download) for `steering` tests.

One builder per supported family (Llama, Qwen2, Gemma 3, Mistral, GPT-2, LLaVA, LLaVA-NeXT, Qwen2.5-VL), a tiny
WordLevel tokenizer with a BOS template (``<s> $A``) and an ``<image>`` token, and ``TupleLM``: a toy model whose
decoder layers return tuples, the transformers-4 convention, so hooks are tested on both output structures.
Dropout is zero everywhere and attention is ``eager`` so padded and unpadded runs are numerically comparable.
"""

from __future__ import annotations

import torch
from torch import nn

LM_WORDS = (
    "q a the is was what who where when why how of in on to and or not no yes true false paris london rome "
    "capital city france italy england sky blue green red water wet dry fire hot cold sun moon earth round flat "
    "cats dogs can fly swim eat fish birds people say i have comment it will rain always never sometimes"
).split()
LM_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "<image>"]
VOCAB_SIZE = 128
IMAGE_TOKEN = "<image>"

FAMILIES = ("llama", "qwen2", "gemma3", "mistral", "gpt2")
VLM_FAMILIES = ("llava", "llava_next", "qwen2_5_vl")


def tiny_lm_tokenizer():
    """A WordLevel fast tokenizer (~80 words) that prepends ``<s>``; pad ``<pad>``, unk ``<unk>``, mask ``<mask>``."""
    from tests.tiny import word_level_tokenizer

    assert len(LM_SPECIALS) + len(LM_WORDS) <= VOCAB_SIZE
    specials = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", mask_token="<mask>")
    return word_level_tokenizer(LM_WORDS, LM_SPECIALS, "<unk>", "<s> $A", 128, additional_special_tokens=[IMAGE_TOKEN],
                                **specials)  # fmt: skip


def _text_kwargs(hidden: int = 16, layers: int = 3) -> dict:
    return dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )


def tiny_causal_lm(family: str = "llama", seed: int = 0, layers: int = 3):
    """A random decoder-only LM of ``family`` (one of ``FAMILIES``), hidden size 16, eval mode, eager attention."""
    import transformers as tf

    torch.manual_seed(seed)
    kw = _text_kwargs(layers=layers)
    if family == "llama":
        config = tf.LlamaConfig(**kw)
        cls = tf.LlamaForCausalLM
    elif family == "qwen2":
        config = tf.Qwen2Config(**kw)
        cls = tf.Qwen2ForCausalLM
    elif family == "mistral":
        config = tf.MistralConfig(**kw, sliding_window=None)
        cls = tf.MistralForCausalLM
    elif family == "gemma3":
        config = tf.Gemma3TextConfig(**kw, head_dim=8, sliding_window=16, query_pre_attn_scalar=8)
        cls = tf.Gemma3ForCausalLM
    elif family == "gpt2":
        config = tf.GPT2Config(
            vocab_size=VOCAB_SIZE, n_embd=16, n_layer=layers, n_head=2, n_positions=128, pad_token_id=0,
            bos_token_id=2, eos_token_id=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        cls = tf.GPT2LMHeadModel
    else:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    config._attn_implementation = "eager"
    return cls(config).eval()


def _clip_vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8
    )


def tiny_vlm(family: str = "llava", seed: int = 0):
    """A random VLM of ``family`` (one of ``VLM_FAMILIES``); image token id = the tokenizer's ``<image>`` (5).

    LLaVA: images (B, 3, 16, 16) give 4 image tokens each. LLaVA-NeXT: ``pixel_values`` (B, 2, 3, 16, 16) with
    ``image_sizes=[[16, 16]]``; use ``vlm_image_token_count`` for the token count.
    """
    import transformers as tf

    torch.manual_seed(seed)
    image_id = LM_SPECIALS.index(IMAGE_TOKEN)
    text = tf.LlamaConfig(**_text_kwargs(hidden=32, layers=3))
    if family == "llava":
        config = tf.LlavaConfig(
            vision_config=_clip_vision_config(), text_config=text, image_token_index=image_id,
            vision_feature_select_strategy="default", vision_feature_layer=-1,
        )  # fmt: skip
        cls = tf.LlavaForConditionalGeneration
    elif family == "llava_next":
        config = tf.LlavaNextConfig(
            vision_config=_clip_vision_config(), text_config=text, image_token_index=image_id,
            vision_feature_select_strategy="default", vision_feature_layer=-1,
            image_grid_pinpoints=[[16, 16], [16, 32], [32, 16]],
        )  # fmt: skip
        cls = tf.LlavaNextForConditionalGeneration
    elif family == "qwen2_5_vl":
        config = tf.Qwen2_5_VLConfig(
            text_config=dict(**_text_kwargs(hidden=32, layers=3), rope_parameters={
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                               patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=8,
                               fullatt_block_indexes=[0]),
            image_token_id=image_id, video_token_id=6, vision_start_token_id=7, vision_end_token_id=8,
        )  # fmt: skip
        cls = tf.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(f"family {family!r} is not one of {VLM_FAMILIES}")
    config._attn_implementation = "eager"
    for sub in ("text_config", "vision_config"):
        if hasattr(config, sub):
            getattr(config, sub)._attn_implementation = "eager"
    return cls(config).eval()


def tiny_llava_image(seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Random ``pixel_values`` (B, 3, 16, 16) for ``tiny_vlm("llava")``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 16, 16, generator=g)


LLAVA_IMAGE_TOKENS = 4  # (16 / 8)^2 patches, CLS dropped by the "default" strategy


class _TupleBlock(nn.Module):
    """A pre-norm residual MLP block that returns ``(hidden_states, None)`` like transformers-4 decoder layers."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, None]:
        return hidden_states + self.mlp(self.norm(hidden_states)), None


class _TupleBody(nn.Module):
    def __init__(self, d: int, layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB_SIZE, d)
        self.layers = nn.ModuleList(_TupleBlock(d) for _ in range(layers))


class TupleLM(nn.Module):
    """A toy LM (``model.model.layers``) whose layers return tuples; forward(input_ids | inputs_embeds) -> logits."""

    def __init__(self, d: int = 16, layers: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.model = _TupleBody(d, layers)
        self.lm_head = nn.Linear(d, VOCAB_SIZE)
        self.config = type("Cfg", (), {"hidden_size": d, "num_hidden_layers": layers})()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        h = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        for layer in self.model.layers:
            h = layer(h)[0]
        return type("Out", (), {"logits": self.lm_head(h)})()


def tiny_pairs():
    """Three (prompt, preferred, dispreferred) triples over the tiny tokenizer's vocabulary."""
    from steering import ContrastivePair

    return [
        ContrastivePair("q what is the capital of france a", " paris", " london rome"),
        ContrastivePair("q can cats fly a", " no", " yes they can fly"),
        ContrastivePair("q is the sky blue a", " yes it is", " no"),
    ]


def last_token_delta(model, embeds, masked, layer: int):
    """h(x) − h(x∖masked) at the last position of decoder layer ``layer`` output, for (1, T, d) embeddings."""
    import torch

    from steering import capture_layer_outputs

    with torch.no_grad(), capture_layer_outputs(model, [layer]) as store:
        model(inputs_embeds=embeds)
        h = store[layer][0, -1].clone()
        model(inputs_embeds=masked)
        return h - store[layer][0, -1]


def save_tiny_lm(folder, family: str = "llama", seed: int = 0, layers: int = 3):
    """Save ``tiny_causal_lm(family)`` and ``tiny_lm_tokenizer()`` as an HF folder (for ``model_path`` arguments)."""
    from pathlib import Path

    folder = Path(folder)
    tiny_causal_lm(family, seed=seed, layers=layers).save_pretrained(folder)
    tiny_lm_tokenizer().save_pretrained(folder)
    return folder


def save_tiny_vlm(folder, family: str = "llava", seed: int = 0):
    """Save ``tiny_vlm(family)`` and the tiny tokenizer as an HF folder."""
    from pathlib import Path

    folder = Path(folder)
    tiny_vlm(family, seed=seed).save_pretrained(folder)
    tiny_lm_tokenizer().save_pretrained(folder)
    return folder


TINY_QUESTIONS = (
    ("what is the capital of france", "paris", "london"),
    ("can cats fly", "no", "yes they can fly"),
    ("is the sky blue", "yes it is", "no"),
    ("is water wet", "yes", "no it is dry"),
    ("is the earth flat", "no it is round", "yes"),
    ("can dogs swim", "yes", "no never"),
    ("is fire cold", "no it is hot", "yes"),
    ("what is the capital of italy", "rome", "paris"),
)


def write_tiny_pairs(path, n: int = 11):
    """A JSONL pairs file of ``n`` rows over the tiny vocabulary (questions cycle; extra choices for MC1/MC2)."""
    import json
    from pathlib import Path

    rows = []
    for i in range(n):
        q, good, bad = TINY_QUESTIONS[i % len(TINY_QUESTIONS)]
        extra = TINY_QUESTIONS[(i + 3) % len(TINY_QUESTIONS)][2]
        question = q + " " + " ".join(["the"] * (i // len(TINY_QUESTIONS)))
        rows.append({"question": question, "preferred": good, "dispreferred": bad,
                     "correct": [good, "i have no comment"], "incorrect": [bad, extra]})  # fmt: skip
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Path(path)


def rows_through_layer0(model, fn) -> int:
    """Sequence rows that reached decoder layer 0 while ``fn`` ran (forwards only): the cost of a packed or padded
    call in rows."""
    from steering.layers import find_decoder_layers

    rows = []
    handle = find_decoder_layers(model)[0].register_forward_hook(lambda m, a, o: rows.append(
        (o if isinstance(o, torch.Tensor) else o[0]).shape[0]))  # fmt: skip
    try:
        fn()
    finally:
        handle.remove()
    return sum(rows)
