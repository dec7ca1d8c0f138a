"""Tiny random models and tokenizers built in code (< 1 s, no download), shared by all tests.

``tiny_tokenizer`` is a real ``PreTrainedTokenizerFast`` (WordLevel + whitespace pre-tokenizer, BERT-style
``[CLS] … [SEP]`` template) so padding, attention masks, ``offset_mapping`` and ``word_ids`` behave as with a hub
tokenizer. ``save_tiny_classifier`` writes a folder that ``lmcore.models`` loads like any HF model folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "the a an is was it this that movie film good great bad awful terrible fun boring love hate and but not very "
    "i my me you to of in on for with card money account transfer balance pin cash top up lost stolen what how "
    "why when can do please help need want new old fee charged twice refund where are"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_level_tokenizer(
    words, specials, unk: str, template: str, max_length: int, pair: str | None = None, **special_tokens
):
    """A lower-casing, whitespace-split WordLevel fast tokenizer over ``specials + words``; ``template`` is the
    single-sequence post-processing template (e.g. ``"[CLS] $A [SEP]"``)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(list(specials) + list(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    used = [t for t in vocab if t in template.split()]
    extra = {"pair": pair} if pair else {}
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, vocab[t]) for t in used],
                                                       **extra)  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, model_max_length=max_length, **special_tokens)


def tiny_tokenizer():
    """A WordLevel fast tokenizer over ~70 words; unknown words map to ``[UNK]``."""
    specials = dict(pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return word_level_tokenizer(WORDS, SPECIALS, "[UNK]", "[CLS] $A [SEP]", 64, pair="[CLS] $A [SEP] $B [SEP]",
                                **specials)  # fmt: skip


def tiny_classifier(num_labels: int = 2, seed: int = 0):
    """A 1-layer BERT classifier, hidden size 16, over the tiny tokenizer's vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


def save_tiny_classifier(folder: str | Path, num_labels: int = 2, seed: int = 0) -> Path:
    """Save a tiny classifier and its tokenizer as an HF model folder and return the folder."""
    folder = Path(folder)
    tiny_classifier(num_labels, seed).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
