import pytest
import torch

from cap_lightning.priors.masks import apply_mask, sample_masks
from cap_lightning.priors.ridge import lime_kernel, weighted_ridge


def _problem(m: int = 40, n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.rand(m, n, generator=g) > 0.4).double()
    s = torch.randn(m, generator=g, dtype=torch.float64)
    w = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return z, s, w


@pytest.mark.parametrize("lam", [1e-3, 1.0, 10.0])
def test_cholesky_ridge_equals_least_squares(lam):
    z, s, w = _problem()
    fit = weighted_ridge(z, s, w, lam)
    # the same problem as one augmented least-squares system: rows sqrt(w)·[Z 1] | sqrt(w)·s, plus sqrt(λ)·I for coef
    n = z.shape[1]
    design = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], 1) * w.sqrt()[:, None]
    penalty = torch.cat([lam**0.5 * torch.eye(n, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)], 1)
    a = torch.cat([design, penalty])
    b = torch.cat([s * w.sqrt(), torch.zeros(n, dtype=torch.float64)])
    sol = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    assert fit.solver == "cholesky"
    torch.testing.assert_close(fit.coef, sol[:n], atol=1e-9, rtol=1e-9)
    assert fit.intercept == pytest.approx(float(sol[n]), abs=1e-9)


def test_cholesky_ridge_equals_sklearn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    z, s, w = _problem(seed=3)
    fit = weighted_ridge(z, s, w, 1.0)
    ref = sklearn.Ridge(alpha=1.0, fit_intercept=True).fit(z.numpy(), s.numpy(), sample_weight=w.numpy())
    torch.testing.assert_close(fit.coef, torch.from_numpy(ref.coef_), atol=1e-9, rtol=1e-9)
    assert fit.intercept == pytest.approx(float(ref.intercept_), abs=1e-9)
    assert fit.r2 == pytest.approx(ref.score(z.numpy(), s.numpy(), sample_weight=w.numpy()), abs=1e-9)


def test_ridge_falls_back_without_nan_when_singular():
    z = torch.ones(5, 3, dtype=torch.float64)  # constant columns: Zc = 0, A = 0 at λ = 0
    fit = weighted_ridge(z, torch.arange(5.0), torch.ones(5), lam=0.0)
    assert torch.isfinite(fit.coef).all() and fit.solver in ("cholesky+jitter", "lstsq")


def test_ridge_rejects_bad_input():
    z, s, w = _problem()
    with pytest.raises(FloatingPointError):
        weighted_ridge(z, s.clone().fill_(float("nan")), w)
    with pytest.raises(ValueError, match="lambda"):
        weighted_ridge(z, s, w, lam=-1.0)
    with pytest.raises(ValueError, match="shapes"):
        weighted_ridge(z, s[:-1], w)


def test_lime_kernel_matches_the_lime_convention():
    z = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    w = lime_kernel(z, 25.0)
    d = 100 * (1 - 2 / (2**0.5 * 2))  # cosine distance of [1,0,1,0] to the all-ones vector, × 100
    torch.testing.assert_close(w, torch.tensor([1.0, (torch.exp(torch.tensor(-(100.0**2) / 625))).sqrt().item(),
                                                 torch.exp(torch.tensor(-(d**2) / 625)).sqrt().item()],
                                                dtype=torch.float64))  # fmt: skip


def test_masks_are_deterministic_and_well_formed():
    m = sample_masks(9, "loo+lime", n_samples=32, seed=1, text="a text")
    assert m.shape == (32, 9) and m[0].all()
    assert torch.equal(m[1:10], ~torch.eye(9, dtype=torch.bool))  # leave-one-out rows
    deleted = (~m[10:]).sum(-1)
    assert deleted.min() >= 1 and deleted.max() <= 8  # LIME rows delete 1..n-1 words
    assert torch.equal(m, sample_masks(9, "loo+lime", n_samples=32, seed=1, text="a text"))
    assert not torch.equal(m, sample_masks(9, "loo+lime", n_samples=32, seed=2, text="a text"))
    assert sample_masks(9, "loo", n_samples=4).shape == (10, 9)  # LOO rows are never dropped
    assert sample_masks(9, "lime", n_samples=20)[1:].sum(-1).max() < 9


def test_small_texts_enumerate_every_subset():
    m = sample_masks(3, n_samples=64)
    assert m.shape == (8, 3) and m[0].all() and len({tuple(r.tolist()) for r in m}) == 8
    assert sample_masks(1).tolist() == [[True], [False]]
    assert sample_masks(0).shape == (1, 0)
    with pytest.raises(ValueError, match="mask strategy"):
        sample_masks(3, "random")


def test_apply_mask_deletes_or_replaces():
    keep = torch.tensor([True, False, True])
    assert apply_mask(["a", "b", "c"], keep) == "a c"
    assert apply_mask(["a", "b", "c"], keep, "_") == "a _ c"
