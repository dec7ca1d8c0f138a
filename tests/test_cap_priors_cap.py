import math

import pytest
import torch

from cap_lightning.priors.cap import ClassAwarePrior
from cap_lightning.priors.hybrid import HybridPrior, fuse_padded, fuse_priors
from cap_lightning.priors.lime import LIMEPrior
from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts
from tests.tiny_lm import save_tiny_lm, tiny_causal_lm, tiny_lm_tokenizer

LABELS = ["yes", "no", "true_false"]  # the last one spans two teacher tokens
TEXTS = ["is the sky blue", "cats can not fly", "water", "", "the sun is hot and the moon is cold"]
GOLD = [0, 1, 2, 0, 1]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("tiny-teacher"))


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
    prior.label_names, prior._namespace, prior.scorer = LABELS, "test", teacher
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
                            text_prefix="q", answer_prefix="a", example_cache_dir=None)  # fmt: skip
    prior.prepare(TEXTS[:2], GOLD[:2], 3, torch.device("cpu"), label_names=LABELS)
    for p, t in zip(prior(TEXTS[:2], GOLD[:2]), TEXTS[:2]):
        assert len(p) == len(t.split()) and torch.isfinite(p).all()


def test_fuse_mean_max_and_padding():
    a = [torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.2, 0.4])]
    b = [torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0, 0.0])]
    mean = fuse_priors([a, b], "mean")
    torch.testing.assert_close(mean[0], torch.tensor([0.5, 0.75, 0.25]) / 0.75)
    torch.testing.assert_close(mean[1], torch.tensor([0.75, 0.5]) / 0.75)  # a's row is max-normalised first
    biggest = fuse_priors([a, b], "max")
    torch.testing.assert_close(biggest[0], torch.tensor([1.0, 1.0, 0.5]))
    assert [len(x) for x in mean] == [3, 2]
    padded = torch.stack(
        [torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.4, 9.0]]), torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 9.0]])]
    )
    mask = torch.tensor([[True, True, True], [True, True, False]])
    for agg in ("mean", "max", "rank_mean"):
        for norm in ("max", "sum", "zscore_relu"):
            fused = fuse_padded(padded, mask, agg, norm)
            one = fuse_padded(padded[:, 1:, :2], mask[1:, :2], agg, norm)
            torch.testing.assert_close(fused[1, :2], one[0])  # padding (the 9s) never leaks into a row
            assert fused[1, 2] == 0 and fused.max() <= 1
    weighted = fuse_priors([a, b], "weighted", weights=[1.0, 0.0])
    torch.testing.assert_close(weighted[0], a[0])
    with pytest.raises(ValueError, match="word counts"):
        fuse_priors([a, [torch.ones(3), torch.ones(3)]])
    with pytest.raises(ValueError, match="agg"):
        fuse_priors([a], "median")


def test_lime_prior_and_hybrid_prior(tiny_model_dir, teacher_dir, tmp_path):
    texts, labels = ["this movie is great fun", "bad film", "i hate this boring film"], [1, 0, 0]
    lime = LIMEPrior(str(tiny_model_dir), n_samples=32)
    lime.prepare(texts, labels, 2, torch.device("cpu"))
    out = lime(texts, labels)
    assert [len(p) for p in out] == [5, 2, 5] and all(p.min() >= 0 and p.max() <= 1 for p in out)
    assert all(torch.equal(x, y) for x, y in zip(out, lime(texts, labels)))  # deterministic masks
    cap = ClassAwarePrior(teacher_path=str(teacher_dir), n_samples=8, text_prefix="q", answer_prefix="a",
                          example_cache_dir=str(tmp_path / "cap"))  # fmt: skip
    hybrid = HybridPrior([cap, LIMEPrior(str(tiny_model_dir), n_samples=32)], agg="max",
                         example_cache_dir=str(tmp_path / "src"))  # fmt: skip
    hybrid.prepare(texts, labels, 2, torch.device("cpu"), label_names=["no", "yes"])
    fused = hybrid(texts, labels)
    assert [len(p) for p in fused] == [5, 2, 5]
    for f, l_ in zip(fused, out):
        assert (f >= l_ - 1e-6).all()  # max fusion dominates each source
    assert "ClassAwarePrior/gold_rank" in hybrid.diagnostics(texts, labels)
    assert hybrid.cache_key() != HybridPrior([cap, lime], agg="mean").cache_key()


def test_hybrid_sources_on_the_same_reference_fine_tune_it_once(tiny_model_dir, monkeypatch):
    import cap_lightning.priors.reference as reference

    calls = []
    monkeypatch.setattr(reference, "fine_tune", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(reference, "_LAST_REFERENCE", [])
    texts, labels = ["great fun", "bad film"], [1, 0]
    from cap_lightning.priors.base import IGPrior

    hybrid = HybridPrior([LIMEPrior(str(tiny_model_dir), n_samples=8, fine_tune_epochs=1),
                          IGPrior(str(tiny_model_dir), steps=4, max_length=64, fine_tune_epochs=1)],
                         example_cache_dir=None)  # fmt: skip
    hybrid.prepare(texts, labels, 2, torch.device("cpu"))
    assert len(calls) == 1 and hybrid.sources[0].model is hybrid.sources[1].model
    IGPrior(str(tiny_model_dir), steps=4, max_length=64, fine_tune_epochs=1, seed=1).prepare(
        texts, labels, 2, torch.device("cpu")
    )
    assert len(calls) == 2  # another seed is another reference
