"""A tiny random LLaVA built in code (docs/environment.md §4 sizes) and saved as an HF folder, for ``make steer-llava``.

Design decision: LLaVA-1.6 weights are not available offline, so the LLaVA pipeline (image-fed attribution, deltas,
steering, chosen-vs-rejected scoring) is run end to end on random weights; every report made with it says so. The
tokenizer is a WordLevel vocabulary over the synthetic task's words plus ``<image>``.
"""

from __future__ import annotations

from pathlib import Path

WORDS = "q a what is the sky water wet can dogs swim sun hot earth flat blue green yes no it never true false".split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
IMAGE_SIZE, PATCH = 32, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # "default" feature strategy drops CLS


def build_tiny_llava(folder: str | Path, seed: int = 0) -> Path:
    """Write a random ``LlavaForConditionalGeneration`` (hidden 64, 3 layers) and its tokenizer to ``folder``."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(dict.fromkeys(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<image>"], model_max_length=256,
    )  # fmt: skip
    torch.manual_seed(seed)
    text = tf.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3)  # fmt: skip
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=IMAGE_SIZE, patch_size=PATCH)  # fmt: skip
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                            vision_feature_select_strategy="default", vision_feature_layer=-1)  # fmt: skip
    model = tf.LlavaForConditionalGeneration(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_llava(sys.argv[1] if len(sys.argv) > 1 else "runs/steer/tiny_llava/model"))
