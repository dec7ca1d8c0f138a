"""VLM path: attribution and deltas see the image (merged embeddings), per-modality k, image-token masking."""

from __future__ import annotations

import pytest
import torch

from steering import ContrastivePair, GrainsConfig, embed_inputs, extract_deltas, fit_steering_vector, steer
from steering.pairs import image_token_mask
from tests.tiny_lm import LLAVA_IMAGE_TOKENS, last_token_delta, tiny_llava_image, tiny_lm_tokenizer, tiny_vlm

PROMPT = "<image> " * LLAVA_IMAGE_TOKENS + "q what is the sky a"
CFG = GrainsConfig(top_k=2, top_k_image=1, ig_steps=4)


@pytest.fixture(scope="module")
def llava():
    return tiny_vlm("llava"), tiny_lm_tokenizer()


def _ids(tok, prompt=PROMPT):
    return tok(prompt, return_tensors="pt").input_ids[0]


def test_merged_embeddings_carry_the_image_only_in_image_slots(llava):
    model, tok = llava
    x = _ids(tok)
    image = image_token_mask(model, x)
    assert int(image.sum()) == LLAVA_IMAGE_TOKENS
    plain = embed_inputs(model, x)
    a = embed_inputs(model, x, tiny_llava_image(0))
    b = embed_inputs(model, x, tiny_llava_image(1))
    assert torch.equal(a[~image], plain[~image])
    assert not torch.allclose(a[image], plain[image]) and not torch.allclose(a[image], b[image])


def test_a_different_image_gives_different_image_token_scores(llava):
    model, tok = llava
    runs = []
    for seed in (0, 1):
        pair = ContrastivePair(PROMPT, " blue", " green", pixel_values=tiny_llava_image(seed))
        runs.append(extract_deltas(model, tok, [pair], [2], CFG))
    image = image_token_mask(model, _ids(tok))
    s0, s1 = (r.attributions[0].scores for r in runs)
    assert not torch.allclose(s0[image], s1[image], atol=1e-6)
    assert not torch.allclose(runs[0].deltas_pos, runs[1].deltas_pos)
    blind = extract_deltas(model, tok, [ContrastivePair(PROMPT, " blue", " green")], [2], CFG)
    assert not torch.allclose(blind.attributions[0].scores[image], s0[image])  # image-blind = the released defect


def test_per_modality_k_and_image_token_masking(llava):
    model, tok = llava
    pair = ContrastivePair(PROMPT, " blue", " green", pixel_values=tiny_llava_image(0))
    ex = extract_deltas(model, tok, [pair], [1, 2], CFG)
    image = image_token_mask(model, _ids(tok))
    for chosen in (ex.top_pos[0], ex.top_neg[0]):
        assert int(image[chosen].sum()) == 1 and int((~image[chosen]).sum()) == 2
    # masking one image token replaces its merged embedding: δ is h(x) − h(x with that row zeroed)

    e = embed_inputs(model, _ids(tok), pair.pixel_values)[None]
    img_pos = [int(p) for p in ex.top_pos[0] if image[p]]
    txt_pos = [int(p) for p in ex.top_pos[0] if not image[p]]
    masked = e.clone()
    masked[0, img_pos + txt_pos] = 0
    torch.testing.assert_close(ex.deltas_pos[0, 1], last_token_delta(model, e, masked, 2), atol=1e-5, rtol=1e-4)


def test_llava_vector_steers_generation_with_the_image(llava):
    model, tok = llava
    pairs = [ContrastivePair(PROMPT, " blue", " green", pixel_values=tiny_llava_image(s)) for s in range(3)]
    vec = fit_steering_vector(model, tok, pairs, layers=[2], config=CFG, mode="pos")
    ids = _ids(tok)[None]
    kw = dict(pixel_values=tiny_llava_image(0), max_new_tokens=3, do_sample=False, pad_token_id=0)
    base = model.generate(ids, output_scores=True, return_dict_in_generate=True, **kw)
    with steer(model, vec, alpha=8.0):
        steered = model.generate(ids, output_scores=True, return_dict_in_generate=True, **kw)
    assert not torch.allclose(base.scores[0], steered.scores[0])


def test_llava_next_extraction_uses_image_features():
    model, tok = tiny_vlm("llava_next"), tiny_lm_tokenizer()
    sizes = torch.tensor([[16, 16]])
    pv = torch.randn(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    n_image = sum(f.shape[0] for f in model.model.get_image_features(pixel_values=pv, image_sizes=sizes).pooler_output)
    prompt = "<image> " * n_image + "q is it red a"
    pair = ContrastivePair(prompt, " yes", " no", pixel_values=pv, image_kwargs={"image_sizes": sizes})
    ex = extract_deltas(model, tok, [pair], [2], CFG)
    image = image_token_mask(model, tok(prompt, return_tensors="pt").input_ids[0])
    assert int(image.sum()) == n_image and ex.attributions[0].scores[image].abs().sum() > 0


def test_qwen2_5_vl_with_pixels_is_a_clear_error():
    model = tiny_vlm("qwen2_5_vl")
    with pytest.raises(NotImplementedError, match="Qwen2_5_VLForConditionalGeneration"):
        embed_inputs(model, torch.tensor([2, 5, 5]), torch.randn(4, 24))
