import math

import pytest
import torch

from cap_lightning.priors.cap import ClassAwarePrior
from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts, prefix_labels
from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

LABELS = ["yes", "no", "true_false"]  # the last one spans two teacher tokens
TEXTS = ["is the sky blue", "cats can not fly", "water", "", "the sun is hot and the moon is cold"]
GOLD = [0, 1, 2, 0, 1]
INSTRUCTION = "Classify the user utterance into exactly one of the following intents."  # the former default


def _scorer(cached: bool, batch_size: int = 4, max_tokens: int = 40, attn: str = "eager"):
    model = tiny_causal_lm("llama")
    model.config._attn_implementation = attn
    tok = tiny_lm_tokenizer()
    parts = build_prompt_parts(LABELS, "classify the text", "q", "a")
    return TeacherScorer(model, tok, parts, LABELS, batch_size, max_tokens, use_prefix_cache=cached)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_prefix_cached_scores_equal_full_prompt_scores(attn):
    texts = [t for t in TEXTS for _ in range(2)]
    labels = [i % 3 for i in range(len(texts))]
    cached, naive = _scorer(True, attn=attn), _scorer(False, attn=attn)
    a, b = cached.score(texts, labels), naive.score(texts, labels)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert torch.isfinite(a).all() and (a < 0).all()
    for text in TEXTS:
        torch.testing.assert_close(cached.label_logprobs(text), naive.label_logprobs(text), atol=1e-4, rtol=0)
    single = _scorer(True, batch_size=1, attn=attn)  # packing several variants == one at a time
    torch.testing.assert_close(single.score(texts, labels), a, atol=1e-4, rtol=0)


def test_label_names_the_teacher_cannot_encode_are_refused():
    tok = tiny_lm_tokenizer()
    parts = build_prompt_parts(["yes", "xyzzy_plugh"], "classify", "q", "a")
    with pytest.raises(ValueError, match="xyzzy_plugh"):
        TeacherScorer(None, tok, parts, ["yes", "xyzzy_plugh"])
    with pytest.raises(ValueError, match="same teacher tokens"):
        TeacherScorer(None, tok, parts, ["yes", "Yes"])
    with pytest.raises(ValueError, match="chat template"):
        build_prompt_parts(["yes"], "classify", tokenizer=tok, chat_template=True)


class LinearTeacher:
    """A fake scorer: the 'confidence' is intercept + Σ coef[i]·[word i kept], read off the masked text."""

    def __init__(self, coef: dict[str, float], intercept: float = 0.5, nan: bool = False):
        self.coef, self.intercept, self.nan = coef, intercept, nan

    def score(self, texts, labels):
        values = [self.intercept + sum(self.coef.get(w, 0.0) for w in t.split()) for t in texts]
        return torch.tensor([float("nan") if self.nan else v for v in values], dtype=torch.float64)

    def label_logprobs(self, text):
        return torch.tensor([-0.1, -3.0, -4.0], dtype=torch.float64)


def _fake_prior(teacher, **kwargs) -> ClassAwarePrior:
    prior = ClassAwarePrior(
        teacher_path="smollm2-135m" if False else kwargs.pop("path"), example_cache_dir=None, **kwargs
    )
    prior.class_names, prior._namespace, prior.scorer = LABELS, "test", teacher
    return prior


def test_a_linear_teacher_has_its_coefficients_recovered(teacher_dir):
    words = [f"w{i}" for i in range(8)]
    coef = {w: c for w, c in zip(words, [0.9, -0.4, 0.0, 0.3, 1.5, -1.0, 0.2, 0.05])}
    prior = _fake_prior(
        LinearTeacher(coef), path=str(teacher_dir), target="gold_logprob", ridge_lambda=1e-9, n_samples=48
    )
    (record,) = prior.compute([" ".join(words)], [0])
    torch.testing.assert_close(
        torch.tensor(record["phi"], dtype=torch.float64),
        torch.tensor([coef[w] for w in words], dtype=torch.float64),
        atol=1e-6,
        rtol=0,
    )
    assert record["r2"] == pytest.approx(1.0)
    expected = torch.tensor([max(coef[w], 0) / 1.5 for w in words], dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(record["prior"], dtype=torch.float64), expected, atol=1e-6, rtol=0)
    assert record["gold_rank"] == 0 and record["gold_prob"] == pytest.approx(math.exp(-0.1))


def test_nonfinite_teacher_targets_raise_or_give_a_zero_prior(teacher_dir):
    with pytest.raises(FloatingPointError, match="non-finite"):
        _fake_prior(LinearTeacher({}, nan=True), path=str(teacher_dir)).compute(["a b c"], [0])
    (record,) = _fake_prior(LinearTeacher({}, nan=True), path=str(teacher_dir), nonfinite="zero").compute(
        ["a b c"], [0]
    )
    assert record["prior"] == [0.0, 0.0, 0.0] and record["nonfinite"]


def test_class_aware_prior_end_to_end_and_example_cache(teacher_dir, tmp_path):
    kwargs = dict(teacher_path=str(teacher_dir), instruction="classify the text", text_prefix="q", answer_prefix="a",
                  n_samples=16, example_cache_dir=str(tmp_path / "examples"))  # fmt: skip
    prior = ClassAwarePrior(**kwargs)
    prior.prepare(TEXTS, GOLD, 3, torch.device("cpu"), label_names=LABELS)
    out = prior(TEXTS, GOLD)
    assert [len(p) for p in out] == [len(t.split()) for t in TEXTS]
    assert all(torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all() for p in out)
    assert any(len(p) and p.max() == 1 for p in out)
    diag = prior.diagnostics(TEXTS, GOLD)
    assert set(diag) >= {"gold_prob", "gold_rank", "r2"} and len(diag["r2"]) == len(TEXTS)
    again = ClassAwarePrior(**kwargs)  # a new run (another seed's split) reads the stored examples
    again.prepare(TEXTS[::-1], GOLD[::-1], 3, torch.device("cpu"), label_names=LABELS)
    calls = again.scorer.calls
    for a, b in zip(again(TEXTS[::-1], GOLD[::-1]), out[::-1]):
        assert torch.equal(a, b)
    assert again.scorer.calls == calls  # cache hit: the teacher never ran
    recomputed = ClassAwarePrior(**{**kwargs, "example_cache_dir": None})
    recomputed.prepare(TEXTS, GOLD, 3, torch.device("cpu"), label_names=LABELS)
    for a, b in zip(recomputed(TEXTS, GOLD), out):
        torch.testing.assert_close(a, b)  # cache hit == recompute


def test_class_aware_prior_rejects_bad_labels(teacher_dir):
    prior = ClassAwarePrior(teacher_path=str(teacher_dir), example_cache_dir=None)
    with pytest.raises(ValueError, match=r"gold labels \[5\] are missing"):
        prior.prepare(TEXTS[:2], [0, 5], 3, torch.device("cpu"), label_names=LABELS)
    with pytest.raises(ValueError, match="label names for 2 labels"):
        prior.prepare(TEXTS[:2], [0, 1], 2, torch.device("cpu"), label_names=LABELS)
    with pytest.raises(ValueError, match="target"):
        ClassAwarePrior(teacher_path=str(teacher_dir), target="gold")
    with pytest.raises(ValueError, match="does not exist"):
        ClassAwarePrior(teacher_path="./no/such/teacher")


@pytest.mark.parametrize("target", ["label_softmax", "contrastive_k"])
def test_class_aware_targets_are_finite_priors(teacher_dir, target):
    prior = ClassAwarePrior(teacher_path=str(teacher_dir), target=target, contrastive_k=2, n_samples=8,
                            instruction=INSTRUCTION, text_prefix="q", answer_prefix="a",
                            example_cache_dir=None)  # fmt: skip
    prior.prepare(TEXTS[:2], GOLD[:2], 3, torch.device("cpu"), label_names=LABELS)
    for p, t in zip(prior(TEXTS[:2], GOLD[:2]), TEXTS[:2]):
        assert len(p) == len(t.split()) and torch.isfinite(p).all()


def _stub_datamodule(prompt):
    """The duck-typed surface PriorCacheCallback reads from a data module (no datasets code)."""
    from types import SimpleNamespace

    return SimpleNamespace(prior_inputs=lambda: (TEXTS, GOLD, "fingerprint"), label_names=LABELS, num_labels=3,
                           setting="full", teacher_prompt=prompt)  # fmt: skip


def test_teacher_prompt_comes_from_the_data_module_unless_given(teacher_dir, tmp_path):
    from types import SimpleNamespace

    from cap_lightning.priors.callback import PriorCacheCallback
    from cap_lightning.priors.hybrid import HybridPrior

    from_data = SimpleNamespace(instruction=INSTRUCTION, text_prefix="q", answer_prefix="a")
    explicit = ClassAwarePrior(teacher_path=str(teacher_dir), n_samples=8, instruction=INSTRUCTION, text_prefix="q",
                               answer_prefix="a", example_cache_dir=None)  # fmt: skip
    implicit = ClassAwarePrior(teacher_path=str(teacher_dir), n_samples=8, example_cache_dir=None)
    callback = PriorCacheCallback(implicit, cache_dir=str(tmp_path))
    folder = callback.entry_dir(_stub_datamodule(from_data))  # hands the data module's prompt to the prior
    assert implicit.prompt() == explicit.prompt() == vars(from_data)
    assert implicit.cache_key() == explicit.cache_key()  # the same prompt, however given, is the same cache entry
    assert folder == PriorCacheCallback(explicit, cache_dir=str(tmp_path)).entry_dir(_stub_datamodule(from_data))
    implicit.prepare(TEXTS, GOLD, 3, torch.device("cpu"), label_names=LABELS)
    explicit.prepare(TEXTS, GOLD, 3, torch.device("cpu"), label_names=LABELS)
    assert implicit.scorer.parts == explicit.scorer.parts
    for a, b in zip(implicit(TEXTS, GOLD), explicit(TEXTS, GOLD)):
        torch.testing.assert_close(a, b)
    other = SimpleNamespace(instruction="Pick one.", text_prefix="Text:", answer_prefix="Label:")
    assert callback.entry_dir(_stub_datamodule(other)) != folder  # a new dataset prompt is a new cache entry

    overriding = ClassAwarePrior(teacher_path=str(teacher_dir), answer_prefix="Label:", example_cache_dir=None)
    overriding.set_data_defaults(teacher_prompt=from_data)
    assert overriding.prompt() == {"instruction": INSTRUCTION, "text_prefix": "q", "answer_prefix": "Label:"}

    hybrid = HybridPrior([ClassAwarePrior(teacher_path=str(teacher_dir), example_cache_dir=None)],
                         example_cache_dir=None)  # fmt: skip
    PriorCacheCallback(hybrid, cache_dir=str(tmp_path)).entry_dir(_stub_datamodule(other))
    assert hybrid.sources[0].prompt() == vars(other)  # the hybrid forwards the data module's prompt


def test_a_missing_teacher_prompt_is_a_clear_error_before_the_teacher_loads(teacher_dir, monkeypatch):
    import lmcore.models

    def no_loading(*args, **kwargs):
        raise AssertionError("the teacher must not load")

    monkeypatch.setattr(lmcore.models, "load_causal_lm", no_loading)
    monkeypatch.setattr(lmcore.models, "load_tokenizer", no_loading)
    prior = ClassAwarePrior(teacher_path=str(teacher_dir), text_prefix="q", example_cache_dir=None)
    prior.set_data_defaults(teacher_prompt=_stub_datamodule(None).teacher_prompt)  # custom data: no prompt
    with pytest.raises(ValueError, match="no instruction, answer_prefix.*init_args.*teacher_prompt"):
        prior.prepare(TEXTS, GOLD, 3, torch.device("cpu"), label_names=LABELS)


PREFIXED = ["yes", "yes_no", "true_false", "no"]  # "yes" is a token prefix of "yes no"; the others of nothing


def test_prefix_labels_are_scored_with_the_end_marker(model_tok):
    model, tok = model_tok
    parts = build_prompt_parts(PREFIXED, "classify the text", "q", "a")
    assert parts.end == "\n"  # the answer line's end; the tiny WordLevel tokenizer drops it, so EOS stands in
    marked = TeacherScorer(model, tok, parts, PREFIXED)
    plain = TeacherScorer(model, tok, parts, PREFIXED, end_marker=False)
    naive = TeacherScorer(model, tok, parts, PREFIXED, use_prefix_cache=False)
    assert prefix_labels(plain.label_ids) == [True, False, False, False]
    assert marked.label_ids == [plain.label_ids[0] + [tok.eos_token_id], *plain.label_ids[1:]]
    for text in TEXTS[:3]:
        with_end, without = marked.label_logprobs(text), plain.label_logprobs(text)
        assert with_end[0] < without[0]  # p(yes, then end) < p(yes...): no longer the prefix's probability
        torch.testing.assert_close(with_end[1:], without[1:], atol=1e-5, rtol=0)  # the others are unchanged
        torch.testing.assert_close(naive.label_logprobs(text), with_end, atol=1e-4, rtol=0)
        torch.testing.assert_close(marked.score([text] * 4, range(4), progress=False), with_end, atol=1e-4, rtol=0)


def test_the_end_marker_changes_cache_keys_only_where_it_can_change_scores(teacher_dir):
    def prior(names, **kwargs):
        out = ClassAwarePrior(teacher_path=str(teacher_dir), instruction="classify the text", text_prefix="q",
                              answer_prefix="a", n_samples=8, example_cache_dir=None, **kwargs)  # fmt: skip
        out.set_data_defaults(label_names=names)
        return out

    assert prior(PREFIXED).cache_key() != prior(PREFIXED, end_marker=False).cache_key()
    # no label is another's prefix (or the marker is off): the configuration, and so the key, of earlier versions
    assert "end_marker" not in prior(LABELS).config() and "end_marker" not in prior(PREFIXED, end_marker=False).config()
    assert prior(LABELS).cache_key() == prior(LABELS, end_marker=False).cache_key()
    assert prior(LABELS).cache_key() == prior(PREFIXED, end_marker=False).cache_key()  # names enter the key elsewhere
    used = prior(PREFIXED)
    used.prepare(TEXTS, [0, 1, 2, 3, 0], 4, torch.device("cpu"), label_names=PREFIXED)
    assert used.scorer.label_ids[0][-1] == used.scorer.tokenizer.eos_token_id
