"""Task loaders, MC metrics, batched scoring and side-effect metrics (tiny models; real TruthfulQA files)."""

from __future__ import annotations

import pytest
import torch

from steering import SteeringVector, steer
from steering.scoring import encode_prompt
from steering.tasks import MCExample, choice_metrics, load_task, load_truthfulqa, prompt_side_effects, score_examples
from tests.tiny_lm import FAMILIES, tiny_llava_image, tiny_vlm


def test_choice_metrics_invariants():
    ex = MCExample("q", ("a", "b", "c"), {"mc1": ((0,), (1, 2)), "mc2": ((0, 1), (2,)), "binary": ((0,), (2,))}, (0, 2))
    m = choice_metrics(ex, torch.tensor([-1.0, -3.0, -2.0]))
    assert m["mc1"] == 1.0 and m["binary"] == 1.0
    p = torch.tensor([-1.0, -3.0, -2.0]).softmax(0)
    assert m["mc2"] == pytest.approx(float(p[0] + p[1]))
    assert choice_metrics(ex, torch.tensor([-3.0, -1.0, -2.0]))["mc1"] == 0.0  # a false answer wins
    r = ex.restricted("binary")
    assert r.choices == ("a", "c") and r.targets == {"binary": ((0,), (1,))} and r.pair == (0, 1)
    with pytest.raises(ValueError, match="indexes outside"):
        MCExample("q", ("a", "b"), {"mc1": ((0,), (5,))}, (0, 1))


def test_truthfulqa_mc_and_binary_2025(shared_data, model_tok):
    _, tok = model_tok
    mc = load_truthfulqa(tok, str(shared_data / "truthfulqa"), "mc")
    assert len(mc) == 817
    for ex in mc[:50]:
        assert len(ex.targets["mc1"][0]) == 1 and len(ex.targets["binary"][1]) == 1
        assert ex.pair == (ex.targets["binary"][0][0], ex.targets["binary"][1][0])
        assert ex.choices[ex.targets["mc1"][0][0]] in {ex.choices[i] for i in ex.targets["mc2"][0]}
        assert ex.prompt.startswith("Q: ") and all(c.startswith(" ") for c in ex.choices)
    assert [e.choices for e in load_truthfulqa(tok, str(shared_data), "mc")[:5]] == [e.choices for e in mc[:5]]
    binary = load_truthfulqa(tok, str(shared_data / "truthfulqa"), "binary_2025")
    assert 700 < len(binary) <= 790
    ex = binary[0]
    assert set(ex.targets["binary"][0]) <= set(ex.targets["mc2"][0])
    with pytest.raises(ValueError, match="variant 'x' is not one of"):
        load_truthfulqa(tok, str(shared_data), "x")
    with pytest.raises(ValueError, match="has no chat template"):
        load_truthfulqa(tok, str(shared_data), "mc", chat_template=True)


def test_truthfulqa_with_a_chat_template_scores_the_same_choices(shared_data, model_tok):
    from tests.tiny_lm import tiny_lm_tokenizer

    model, plain = model_tok
    tok = tiny_lm_tokenizer()
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}[assistant]"
    chat = load_truthfulqa(tok, str(shared_data / "truthfulqa"), "mc", chat_template=True)[:4]
    base = load_truthfulqa(plain, str(shared_data / "truthfulqa"), "mc")[:4]
    for c, b in zip(chat, base):
        assert c.prompt.startswith("[user] " + b.prompt[3:-3]) and c.prompt.endswith("[assistant]")
        assert [x.strip() for x in c.choices] == [x.strip() for x in b.choices] and c.targets == b.targets
        assert not any(x.startswith(" ") for x in c.choices)  # answers follow the assistant header directly
    assert [s.shape[0] for s in score_examples(model, tok, chat)] == [len(c.choices) for c in chat]


def test_truthfulqa_missing_keys_named(tmp_path, model_tok):
    _, tok = model_tok
    (tmp_path / "TruthfulQA" / "data").mkdir(parents=True)
    (tmp_path / "TruthfulQA" / "data" / "mc_task.json").write_text('[{"question": "q", "mc1_targets": {}}]')
    with pytest.raises(ValueError, match=r"missing keys \['mc2_targets'\]"):
        load_truthfulqa(tok, str(tmp_path))
    with pytest.raises(ValueError, match="task 'x' is not one of"):
        load_task("x", tok)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"mc1_targets": {}, "mc2_targets": {"a": 1, "b": 0}}, r"mc1_targets is empty"),
        ({"mc1_targets": {"a": 0, "b": 0}, "mc2_targets": {"a": 1, "b": 0}}, r"mc1_targets has no true answer"),
        ({"mc1_targets": {"a": 1}, "mc2_targets": {"a": 1, "b": 0}}, r"mc1_targets has no false answer"),
        ({"mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {}}, r"mc2_targets is empty"),
        ({"mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"b": 0}}, r"mc2_targets has no true answer"),
        ({"mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {" ": 1, "b": 0}}, r"mc2_targets has no true answer"),
    ],
)
def test_truthfulqa_rows_without_true_or_false_answers_are_named(tmp_path, model_tok, row, problem):
    """A row that cannot give MC1 / MC2 / binary targets names the file and the row instead of an IndexError."""
    import json

    _, tok = model_tok
    good = {"question": "q", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1, "b": 0}}
    path = tmp_path / "TruthfulQA" / "data" / "mc_task.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([good, {"question": "q2", **row}]))
    with pytest.raises(ValueError, match=rf"{path}: row 1 .*{problem}.*fix or drop the row"):
        load_truthfulqa(tok, str(tmp_path))


@pytest.mark.parametrize(
    ("row", "problem"),
    [({"preferred": "", "dispreferred": "no"}, "preferred"), ({"preferred": "  ", "dispreferred": "no"}, "preferred"),
     ({"preferred": "yes", "dispreferred": " "}, "dispreferred")],
)  # fmt: skip
def test_pairs_file_empty_answers_are_named(tmp_path, model_tok, row, problem):
    import json

    _, tok = model_tok
    path = tmp_path / "pairs.jsonl"
    rows = [{"question": "q", "preferred": "yes", "dispreferred": "no"}, {"question": "q2", **row}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=rf"{path}: row 1 has an empty {problem} answer"):
        load_task("pairs_file", tok, path=str(path))


def test_pairs_file_identical_answers_are_skipped_and_counted(tmp_path, model_tok):
    """preferred == dispreferred makes the contrastive objective 0: such rows are skipped, with one warning."""
    import json

    _, tok = model_tok
    path = tmp_path / "pairs.csv"
    rows = [{"question": "q", "preferred": "yes", "dispreferred": "no"},
            {"question": "q2", "preferred": "same", "dispreferred": " same "},
            {"question": "q3", "preferred": "x", "dispreferred": "x"},
            {"question": "q4", "preferred": "red", "dispreferred": "blue"}]  # fmt: skip
    path.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 rows .*rows \[1, 2\].*preferred and dispreferred"):
        examples = load_task("pairs_file", tok, path=str(path.with_suffix(".jsonl")))
    assert [e.meta["row"] for e in examples] == [0, 3]


def _examples(tok):
    from tests.tiny_lm import TINY_QUESTIONS

    out = []
    for q, good, bad in TINY_QUESTIONS:
        out.append(MCExample(f"q {q} a", (" " + good, " " + bad, " i have no comment"),
                             {"mc1": ((0,), (1, 2)), "mc2": ((0, 2), (1,))}, (0, 1)))  # fmt: skip
    return out


def test_batched_scoring_equals_one_at_a_time(model_tok):
    model, tok = model_tok
    ex = _examples(tok)
    one = score_examples(model, tok, ex, batch_size=1)
    many = score_examples(model, tok, ex, batch_size=7)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_vlm_scoring_with_images_batched_equals_single():
    from tests.tiny_lm import LLAVA_IMAGE_TOKENS, tiny_lm_tokenizer

    model, tok = tiny_vlm("llava"), tiny_lm_tokenizer()
    img = " ".join(["<image>"] * LLAVA_IMAGE_TOKENS)
    ex = [MCExample(f"{img} q is the sky blue a", (" yes", " no"), {"preference": ((0,), (1,))}, (0, 1),
                    tiny_llava_image(seed=s)) for s in range(3)]  # fmt: skip
    one = score_examples(model, tok, ex, batch_size=1)
    many = score_examples(model, tok, ex, batch_size=6)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(one[0], one[1])  # the image changes the scores


def test_side_effects_zero_at_alpha_zero_and_positive_otherwise(model_tok):
    model, tok = model_tok
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)}, {"hidden_size": 16, "num_layers": 3})
    prompts = [e.prompt for e in _examples(tok)]
    kl, nb, ns = prompt_side_effects(model, tok, prompts, vec, 0.0, batch_size=3)
    assert torch.equal(nb, ns) and kl.abs().max() < 1e-6
    kl, nb, ns = prompt_side_effects(model, tok, prompts, vec, 8.0, batch_size=3)
    assert (kl > 0).all() and not torch.equal(nb, ns) and kl.shape == (len(prompts),)
    kl1, _, _ = prompt_side_effects(model, tok, prompts, vec, 8.0, batch_size=1)
    torch.testing.assert_close(kl, kl1, atol=1e-5, rtol=1e-4)


def test_synthetic_vlm_task_is_seeded():
    a, b = load_task("synthetic_vlm", None, n=4, seed=1), load_task("synthetic_vlm", None, n=4, seed=1)
    assert all(torch.equal(x.pixel_values, y.pixel_values) and x.prompt == y.prompt for x, y in zip(a, b))


def test_reference_overlap_judge_and_judge_loading():
    from steering.tasks import GenExample, judge_scores, load_judge, reference_overlap_judge

    ex = GenExample("q", "The cap is yellow.")
    assert reference_overlap_judge(ex, "the cap is yellow") == pytest.approx(6.0)
    assert reference_overlap_judge(ex, "a blue car") == 0.0
    assert 0 < reference_overlap_judge(ex, "the cap is red") < 6
    assert load_judge("steering.tasks.generation.reference_overlap_judge") is reference_overlap_judge
    with pytest.raises(ValueError, match="dotted path"):
        load_judge("judge")
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\]"):
        judge_scores(lambda e, a: 7.0, [ex], ["x"])


def test_mmhal_without_images_fails_clearly(shared_data, model_tok):
    _, tok = model_tok
    with pytest.raises(FileNotFoundError, match="not available offline"):
        load_task("mmhal", tok, model_path="unused", data_dir=str(shared_data / "mmhal_bench"), image_dir=None)


def test_generation_task_through_the_module(tmp_path):
    """Base vs steered generation judged per example; each example counted once."""
    import lightning as L

    from steering.data import SteeringDataModule
    from steering.module import SteeringModule
    from steering.tasks import GenExample
    from tests.tiny_lm import TINY_QUESTIONS, save_tiny_lm

    folder = save_tiny_lm(tmp_path / "m")
    vec = tmp_path / "v.safetensors"
    SteeringVector({1: torch.randn(16)}, {"hidden_size": 16, "num_layers": 3}).save(vec)
    examples = [GenExample(f"q {q} a", good, contrast=bad) for q, good, bad in TINY_QUESTIONS[:5]]
    dm = SteeringDataModule(model_path=str(folder), n_steer=1, n_dev=0, eval_batch_size=2)
    dm.splits, dm.indices = {"steer": examples[:1], "dev": [], "test": examples}, {"steer": [0], "dev": [], "test": []}
    module = SteeringModule(model_path=str(folder), vector_path=str(vec), alpha=4.0, max_new_tokens=4)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(module, datamodule=dm)
    r = module.test_results
    assert r["test/n_examples"] == 5
    for cond in ("base", "steered"):
        assert 0 <= r[f"test/{cond}/judge_score"] <= 6 and 0 <= r[f"test/{cond}/hallucination_rate"] <= 1
    assert examples[0].to_pair().dispreferred.strip() == TINY_QUESTIONS[0][2]


def test_toxigen_pairs_benign_vs_hateful_per_group(shared_data, model_tok):
    _, tok = model_tok
    ex = load_task("toxigen", tok, data_dir=str(shared_data / "toxigen"))
    assert len(ex) > 100 and len({e.meta["group"] for e in ex}) >= 10
    assert all(e.targets == {"nontoxic": ((0,), (1,))} and e.pair == (0, 1) for e in ex)
    assert all(e.choices[0] != e.choices[1] for e in ex)
    again = load_task("toxigen", tok, data_dir=str(shared_data / "toxigen"))
    assert [e.choices for e in again] == [e.choices for e in ex]  # seeded


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("normalize", [None, "per_token", "none"])
def test_packed_scoring_equals_padded_with_and_without_steering(family, normalize):
    """Shared-prompt packing (block-causal mask, restarted positions) == one padded row per choice, base and steered."""
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    torch.manual_seed(0)
    model, tok = tiny_causal_lm(family), tiny_lm_tokenizer()
    ex = _examples(tok) + [MCExample("q is the sky blue a", (" yes", " no it is green", " red"),
                                     {"mc1": ((0,), (1, 2))}, (0, 1))]  # fmt: skip
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)}, {"hidden_size": 16, "num_layers": 3})
    with steer(model, vec, 0.0 if normalize is None else 3.0, normalize=normalize or "per_token"):
        padded = score_examples(model, tok, ex, batch_size=4, packed=False)
        for bs in (1, 5, 100):  # a row holds one question, a few, or all of them
            packed = score_examples(model, tok, ex, batch_size=bs, packed=True)
            for a, b in zip(padded, packed):
                torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_logprobs_of_packed_rows_equal_a_padded_prompt_forward(family):
    """The scorer's fused prompt log-probabilities (read from its packed rows) equal a separate padded forward of the
    prompts, steered or not, for every batch size; the answer scores do not change; the KL and NLL computed from
    them equal prompt_side_effects'; a caller's base log-probabilities give the same side effects."""
    from steering.tasks.side_effects import prompt_logprobs, side_effects
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    torch.manual_seed(0)
    model, tok = tiny_causal_lm(family), tiny_lm_tokenizer()
    ex = _examples(tok)
    prompts = [e.prompt for e in ex]
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)}, {"hidden_size": 16, "num_layers": 3})
    base = prompt_logprobs(model, tok, prompts, batch_size=2)
    with steer(model, vec, 3.0):
        padded = prompt_logprobs(model, tok, prompts, batch_size=2)
        for bs in (1, 5, 100):
            scores, fused = score_examples(model, tok, ex, batch_size=bs, prompt_logprobs=True)
            plain = score_examples(model, tok, ex, batch_size=bs)
            unpacked = score_examples(model, tok, ex, batch_size=bs, packed=False, prompt_logprobs=True)[1]
            for a, b, c in zip(padded, fused, unpacked):
                torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
                torch.testing.assert_close(a, c, atol=2e-5, rtol=2e-5)
            for a, b in zip(scores, plain):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert [lp.shape[0] for lp in base] == [len(encode_prompt(tok, p)) for p in prompts]
    expected = prompt_side_effects(model, tok, prompts, vec, 3.0, batch_size=2)
    for a, b in zip(side_effects(tok, prompts, base, fused), expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    given = prompt_side_effects(model, tok, prompts, vec, 3.0, batch_size=2, base=base)
    for a, b in zip(given, expected):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="3 prompts, 2 base"):
        side_effects(tok, prompts[:3], base[:2], fused[:3])


def test_pack_groups_layout():
    from lmcore.packing import pack_groups, pack_rows

    row = pack_groups([(torch.tensor([5, 6]), [torch.tensor([7]), torch.tensor([8, 9])]),
                       (torch.tensor([4]), [torch.tensor([3, 2])])])  # fmt: skip
    assert row.ids.tolist() == [5, 6, 7, 8, 9, 4, 3, 2]
    assert row.positions.tolist() == [0, 1, 2, 2, 3, 0, 1, 2]
    assert row.keep.tolist() == [1, 1, 3, 5, 6] and row.targets.tolist() == [7, 8, 9, 3, 2]
    assert row.owner.tolist() == [0, 1, 1, 2, 2]
    assert row.prompt_positions.tolist() == [0, 1, 5] and row.prompts.tolist() == [0, 2, 3]
    assert row.allowed[4].tolist() == [True, True, False, True, True, False, False, False]  # answer 2 sees its prompt
    assert row.allowed[7].tolist() == [False] * 5 + [True] * 3  # the second question sees nothing of the first
    assert [list(r) for r in pack_rows([3, 2, 2, 5], 4)] == [[0], [1, 2], [3]]
    assert [list(r) for r in pack_rows([1, 1, 1, 9], 10, max_items=2)] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="at least one token"):
        pack_groups([(torch.tensor([1]), [torch.tensor([], dtype=torch.long)])])


def _faitheval_rows():
    return [
        {"id": "a", "question": "what is the sky", "context": "the sky is green", "answerKey": "B",
         "choices": {"label": ["A", "B", "C"], "text": ["blue", "green", "red"]}},
        {"id": "b", "question": "is fire hot", "context": "fire is cold", "answerKey": 0, "choices": ["cold", "hot"]},
    ]  # fmt: skip


@pytest.mark.parametrize("chat", [False, True])
def test_faitheval_local_file_hub_and_list_choices(tmp_path, model_tok, chat):
    import json

    from tests.tiny_lm import tiny_lm_tokenizer

    tok = model_tok[1]
    if chat:
        tok = tiny_lm_tokenizer()
        tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %} a"
    path = tmp_path / "faitheval.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _faitheval_rows()))
    ex = load_task("faitheval", tok, path=str(path), chat_template=chat)
    assert [e.choices[e.targets["accuracy"][0][0]].strip() for e in ex] == ["green", "cold"]
    assert ex[0].targets["accuracy"][1] == (0, 2) and ex[1].pair == (0, 1)
    assert all("Context:" in e.prompt and e.targets["binary"][0] == e.targets["accuracy"][0] for e in ex)
    scores = score_examples(model_tok[0], tok, ex)  # scored like any MC task
    assert [s.shape[0] for s in scores] == [3, 2]


def test_faitheval_bad_rows_named(tmp_path, model_tok):
    import json

    tok = model_tok[1]
    rows = _faitheval_rows()
    for bad, match in [({"context": None}, "missing fields \\['context'\\]"), ({"answerKey": "Z"}, "answerKey 'Z'"),
                       ({"answerKey": 7, "choices": ["x", "y"]}, "outside the 2 choices")]:  # fmt: skip
        row = {k: v for k, v in {**rows[0], **bad}.items() if v is not None}
        path = tmp_path / "f.jsonl"
        path.write_text(json.dumps(row))
        with pytest.raises(ValueError, match=match):
            load_task("faitheval", tok, path=str(path))
    with pytest.raises(ValueError, match="suffix '.txt'"):
        (tmp_path / "f.txt").write_text("")
        load_task("faitheval", tok, path=str(tmp_path / "f.txt"))


@pytest.mark.parametrize("kwargs", [{"normalize": "legacy_seq_axis"}, {"scope": "prompt", "prompt_length": 3}])
def test_sequence_dependent_steering_is_never_packed(model_tok, kwargs):
    """Under a steer whose effect depends on position or on the whole row, packed scoring falls back to padded rows."""
    from steering.hooks import steers_whole_sequences

    model, tok = model_tok
    ex = _examples(tok)
    vec = SteeringVector({1: torch.randn(16), 2: torch.randn(16)}, {"hidden_size": 16, "num_layers": 3})
    with steer(model, vec, 3.0, **kwargs):
        assert steers_whole_sequences(model)
        padded = score_examples(model, tok, ex, batch_size=4, packed=False)
        packed = score_examples(model, tok, ex, batch_size=4, packed=True)
    assert not steers_whole_sequences(model)
    for a, b in zip(padded, packed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    with steer(model, vec, 3.0):
        assert not steers_whole_sequences(model)


@pytest.mark.parametrize("family", ["gemma3", "mistral", "qwen2"])
def test_packing_falls_back_when_a_row_exceeds_the_sliding_window(family):
    """Packing restarts positions but a sliding window counts packed distance: when prompt + answer is longer than
    the window, scores must still equal one padded row per choice (the scorer falls back to padded rows)."""
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    torch.manual_seed(0)
    model, tok = tiny_causal_lm(family), tiny_lm_tokenizer()
    cfg = model.config.get_text_config()
    cfg.sliding_window = 8
    if hasattr(cfg, "use_sliding_window"):
        cfg.use_sliding_window = True
    long = "q is the sky blue and is the fire cold and is the water wet a"
    ex = [MCExample(long, (" yes it is blue and the fire is hot", " no it is green", " red"),
                    {"mc1": ((0,), (1, 2))}, (0, 1))]  # fmt: skip
    padded = score_examples(model, tok, ex, batch_size=4, packed=False)
    packed = score_examples(model, tok, ex, batch_size=4, packed=True)
    for a, b in zip(padded, packed):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_packing_needs_an_attention_backend_that_takes_a_4d_mask():
    from lmcore.packing import packing_supported
    from tests.tiny_lm import tiny_causal_lm

    model = tiny_causal_lm("llama")
    assert packing_supported(model, 100)
    model.config._attn_implementation = "flash_attention_2"
    assert not packing_supported(model, 10)


def test_with_pairs_lists_the_own_pair_first_then_other_true_false_combinations():
    ex = MCExample("q", (" a", " b", " c", " d"), {"mc1": ((0,), (2, 3)), "mc2": ((0, 1), (2, 3))}, (0, 2))
    items = ex.with_pairs(10, seed=1)
    pairs = [it.pair for it in items]
    assert pairs[0] == (0, 2) and sorted(pairs) == [(0, 2), (0, 3), (1, 2), (1, 3)]  # all 2 × 2, no duplicate
    assert all(it.prompt == ex.prompt and it.choices == ex.choices for it in items)
    assert [it.pair for it in ex.with_pairs(2, seed=1)] == pairs[:2] and ex.with_pairs(1) == [ex]
    with pytest.raises(ValueError, match="limit"):
        ex.with_pairs(0)


def test_truthfulqa_steering_split_expands_to_more_pairs(shared_data, tiny_dir):
    from steering.data import SteeringDataModule

    kw = dict(model_path=str(tiny_dir), task="truthfulqa", task_args={"data_dir": str(shared_data / "truthfulqa")},
              n_steer=4, n_dev=2, n_test=3)  # fmt: skip
    one, many = SteeringDataModule(**kw), SteeringDataModule(**kw, pairs_per_question=5)
    one.setup(), many.setup()
    assert len(one.splits["steer"]) == 4 and 4 < len(many.splits["steer"]) <= 20
    assert one.splits["test"] == many.splits["test"] and one.indices == many.indices  # eval splits unchanged
    assert {ex.prompt for ex in many.splits["steer"]} == {ex.prompt for ex in one.splits["steer"]}
