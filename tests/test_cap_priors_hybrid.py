import pytest
import torch

from cap_lightning.priors.cap import ClassAwarePrior
from cap_lightning.priors.hybrid import HybridPrior, fuse_padded, fuse_priors
from cap_lightning.priors.lime import LIMEPrior
from tests.test_cap_priors_cap import INSTRUCTION


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
    for agg in ("mean", "max", "rank_mean"):  # texts without words, alone or beside others
        assert [len(x) for x in fuse_priors([[torch.zeros(0)], [torch.zeros(0)]], agg)] == [0]
        assert [len(x) for x in fuse_priors([[torch.zeros(0), a[1]], [torch.zeros(0), b[1]]], agg)] == [0, 2]


def test_lime_prior_and_hybrid_prior(tiny_model_dir, teacher_dir, tmp_path):
    texts, labels = ["this movie is great fun", "bad film", "i hate this boring film"], [1, 0, 0]
    lime = LIMEPrior(str(tiny_model_dir), n_samples=32)
    lime.prepare(texts, labels, 2, torch.device("cpu"))
    out = lime(texts, labels)
    assert [len(p) for p in out] == [5, 2, 5] and all(p.min() >= 0 and p.max() <= 1 for p in out)
    assert all(torch.equal(x, y) for x, y in zip(out, lime(texts, labels)))  # deterministic masks
    cap = ClassAwarePrior(teacher_path=str(teacher_dir), n_samples=8, instruction=INSTRUCTION, text_prefix="q",
                          answer_prefix="a", example_cache_dir=str(tmp_path / "cap"))  # fmt: skip
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
    from cap_lightning.priors.ig import IGPrior

    no_disk = {"reference_cache_dir": None}
    hybrid = HybridPrior([LIMEPrior(str(tiny_model_dir), n_samples=8, fine_tune_epochs=1, **no_disk),
                          IGPrior(str(tiny_model_dir), steps=4, max_length=64, fine_tune_epochs=1, **no_disk)],
                         example_cache_dir=None)  # fmt: skip
    hybrid.prepare(texts, labels, 2, torch.device("cpu"))
    assert len(calls) == 1 and hybrid.sources[0].model is hybrid.sources[1].model
    IGPrior(str(tiny_model_dir), steps=4, max_length=64, fine_tune_epochs=1, reference_cache_dir=None, seed=1).prepare(
        texts, labels, 2, torch.device("cpu")
    )
    assert len(calls) == 2  # another seed is another reference
