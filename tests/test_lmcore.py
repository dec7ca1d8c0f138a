"""The neutral base: quadrature, choices, atomic writes, hashes, packing masks."""

import json
import os
from typing import Literal

import numpy as np
import pytest
import torch

from lmcore.choices import check_choice, choices
from lmcore.io import atomic_write, atomic_write_json, atomic_write_text, files_sha256, json_sha256
from lmcore.packing import block_causal_mask
from lmcore.quadrature import QUADRATURES, quadrature_points


@pytest.mark.parametrize("kind", QUADRATURES)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_quadrature_weights_sum_to_one_and_integrate_linear_exactly(kind, steps):
    alphas, weights = quadrature_points(steps, kind)
    assert alphas.dtype == weights.dtype == torch.float64 and alphas.shape == weights.shape == (steps,)
    assert alphas.min() >= 0 and alphas.max() <= 1
    assert float(weights.sum()) == pytest.approx(1.0)
    one_point_inexact = steps == 1 and ("trapezoid" in kind or kind == "gausslegendre_squared")
    if kind not in ("riemann_left", "riemann_right") and not one_point_inexact:
        assert float((weights * alphas).sum()) == pytest.approx(0.5)  # ∫₀¹ α dα


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20])
def test_squared_gauss_legendre_is_exact_in_the_transformed_variable(steps):
    """α = u²: exact for ∫₀¹ α^(m/2) dα = 2 / (m + 2) up to m = 2·steps − 2 (half-integer powers included)."""
    alphas, weights = quadrature_points(steps, "gausslegendre_squared")
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-13) and bool((weights > 0).all())
    assert bool((alphas > 0).all()) and bool((alphas < 1).all()) and bool((alphas.diff() > 0).all())
    for m in range(2 * steps - 1):
        assert float((weights * alphas ** (m / 2)).sum()) == pytest.approx(2 / (m + 2), rel=1e-12)
    u, w = quadrature_points(steps, "gausslegendre")  # the same rule in u: α_j = u_j², w_j' = 2 u_j w_j
    torch.testing.assert_close(alphas, u**2)
    torch.testing.assert_close(weights, 2 * u * w)


@pytest.mark.parametrize("steps", [4, 10, 20])
def test_squared_gauss_legendre_puts_more_points_near_zero(steps):
    near = {
        kind: int((quadrature_points(steps, kind)[0] < 0.2).sum())
        for kind in ("gausslegendre", "gausslegendre_squared")
    }
    assert near["gausslegendre_squared"] > near["gausslegendre"]
    first = {kind: float(quadrature_points(steps, kind)[0][0]) for kind in ("gausslegendre", "gausslegendre_squared")}
    assert first["gausslegendre_squared"] < first["gausslegendre"]


def test_squared_gauss_legendre_integrates_a_sqrt_singularity_better():
    """g(α) = 1/(2√α) + 1 (∫ = 2), steep at 0 like the zero-baseline path: α = u² makes it a polynomial in u."""

    def err(kind: str) -> float:
        a, w = quadrature_points(10, kind)
        return abs(float((w * (0.5 / a.sqrt() + 1)).sum()) - 2.0)

    assert err("gausslegendre_squared") < 1e-12 < err("gausslegendre")


@pytest.mark.parametrize("kind", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_quadrature_matches_captum(kind):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(kind)
    a, w = quadrature_points(6, kind)
    np.testing.assert_allclose(a.numpy(), alphas(6), atol=1e-7)
    np.testing.assert_allclose(w.numpy(), step_sizes(6), atol=1e-12)


def test_cap_spellings_are_the_riemann_rules():
    for short, long in (("middle", "riemann_middle"), ("trapezoid", "riemann_trapezoid")):
        for x, y in zip(quadrature_points(5, short), quadrature_points(5, long)):
            torch.testing.assert_close(x, y)


def test_quadrature_rejects_bad_input():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        quadrature_points(0)
    with pytest.raises(ValueError, match="quadrature 'simpson' is not one of"):
        quadrature_points(4, "simpson")


def test_check_choice_reads_the_literal():
    Mode = Literal["a", "b"]
    assert choices(Literal[Mode, "c"]) == ("a", "b", "c")
    check_choice("mode", "b", Mode)
    with pytest.raises(ValueError, match=r"mode 'z' is not one of \('a', 'b'\)"):
        check_choice("mode", "z", Mode)
    with pytest.raises(TypeError):
        choices(str)


def test_atomic_write_replaces_whole_or_keeps_old(tmp_path):
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(os.listdir(target.parent)) == ["f.json"]  # no temporary left behind
    atomic_write_text(target, "x\n")
    assert target.read_text() == "x\n"


def test_hashes_depend_on_content_only(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert files_sha256([a]) == files_sha256([b]) != files_sha256([a], headers=["x"])
    assert json_sha256({"x": 1, "y": 2}) == json_sha256({"y": 2, "x": 1}) != json_sha256({"x": 2, "y": 1})


def test_block_causal_mask_with_context():
    # two blocks of 2 after 3 cached tokens; the second block also sees the first (its "prompt")
    allowed = block_causal_mask([(0, 2, 0, 0), (2, 2, 0, 2)], context=3)
    assert allowed.shape == (4, 7)
    assert allowed[:, :3].all()
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed[:, 3:], expected)
