"""Surrogate gradients (docs/neurons.md): Heaviside forward, unit-area peak-1/γ derivatives,
backward."""

from __future__ import annotations

import math

import pytest
import torch
from reference import surrogate_derivative, surrogate_primitive

from ilif import surrogate
from ilif.surrogate import ATan, Rectangle, Sigmoid, Surrogate, Triangle, get_surrogate

SHAPES = [Rectangle, Triangle, Sigmoid, ATan]
WIDTHS = [0.25, 0.5, 1.0, 2.0, 3.0]


def _integration_grid(width: float, reach: float = 1e4, points: int = 400_001) -> torch.Tensor:
    """A float64 grid on [−reach·γ, reach·γ], dense near 0 (h = γ·sinh(u), u uniform)."""
    u_max = math.asinh(reach)
    return width * torch.sinh(torch.linspace(-u_max, u_max, points, dtype=torch.float64))


@pytest.mark.parametrize("cls", SHAPES)
@pytest.mark.parametrize("width", WIDTHS)
def test_unit_area_and_peak(cls: type[Surrogate], width: float) -> None:
    sg = cls(width=width)
    h = _integration_grid(width)
    g = sg.derivative(h)
    area = torch.trapezoid(g, h).item()
    # ATan's tails beyond ±10⁴γ hold 1 − (2/π)·arctan(10⁴π) ≈ 2.0e-5 of the mass; the
    # rectangle's jumps cost one grid step (≈ 1e-4·γ here) of trapezoid error.
    tol = {ATan: 5e-5, Rectangle: 3e-4}.get(cls, 1e-6)
    assert area == pytest.approx(1.0, abs=tol)
    peak = 1.0 / width
    assert sg.derivative(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(
        peak, rel=1e-15
    )
    assert g.max().item() <= peak * (1 + 1e-15)
    assert g.min().item() >= 0.0


@pytest.mark.parametrize("cls", SHAPES)
def test_derivative_matches_spec_formula(cls: type[Surrogate], generator) -> None:
    for width in WIDTHS:
        h = torch.randn(1000, generator=generator, dtype=torch.float64) * 2 * width
        # σ(z)·(1 − σ(z)) loses relative precision in the far tails (1 − σ(z) cancels), where
        # g < 1e-6: the absolute tolerance covers that, the relative one everything else.
        torch.testing.assert_close(
            cls(width=width).derivative(h), surrogate_derivative(cls.name, h, width),
            rtol=1e-13, atol=1e-14,
        )


@pytest.mark.parametrize("cls", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_forward_is_exact_heaviside_with_step_at_zero(cls: type[Surrogate], dtype) -> None:
    tiny = torch.finfo(dtype).tiny
    h = torch.tensor([-3.0, -tiny, -0.0, 0.0, tiny, 1e-3, 5.0], dtype=dtype)
    s = cls(width=1.0)(h)
    assert s.dtype == dtype
    # Θ(h) = 1 for h ≥ 0 (−0.0 ≥ 0 too), 0 below; the width never changes the forward pass.
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert torch.equal(cls(width=0.1)(h), s)
    assert torch.equal(surrogate.heaviside(h), s)


# Rectangle(γ): dS/dh = 1/γ on the open interval |h| < γ/2; the boundary |h| = γ/2 is closed.
RECTANGLE_CASES = [
    # width, h, expected dS/dh
    (1.0, [-0.75, -0.5, -0.4999, -0.25, 0.0, 0.25, 0.4999, 0.5, 0.75],
     [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
    (0.5, [-0.25, -0.2, 0.0, 0.125, 0.25, 0.3],
     [0.0, 2.0, 2.0, 2.0, 0.0, 0.0]),  # 1/γ = 2 on |h| < 0.25
    (2.0, [-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 1.25],
     [0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0]),  # 1/γ = 0.5 on |h| < 1
]


@pytest.mark.parametrize(("width", "h", "expected"), RECTANGLE_CASES)
def test_rectangle_backward_exact(width: float, h: list, expected: list) -> None:
    x = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    Rectangle(width=width)(x).sum().backward()
    assert x.grad.tolist() == expected


def test_rectangle_backward_scales_the_incoming_gradient() -> None:
    # grad_h = grad_S · 1/γ · 1[|h| < γ/2] with γ = 0.5: h = 0.1 open (→ 3·2 = 6),
    # h = −0.25 on the boundary (→ 0), h = 0.2 open (→ −1.5·2 = −3), h = 1 closed (→ 0).
    x = torch.tensor([0.1, -0.25, 0.2, 1.0], dtype=torch.float64, requires_grad=True)
    Rectangle(width=0.5)(x).backward(torch.tensor([3.0, 7.0, -1.5, 2.0], dtype=torch.float64))
    assert x.grad.tolist() == [6.0, 0.0, -3.0, 0.0]


def _primitive_with_surrogate_backward(sg: Surrogate):
    """f(h) = φ(h) in the forward pass, the surrogate's backward in the backward pass.

    (S − S.detach()) is exactly 0 forward and carries g(h) backward, so ``gradcheck`` compares
    the surrogate backward with finite differences of the smooth step φ it claims to differentiate.
    """

    def f(h: torch.Tensor) -> torch.Tensor:
        s = sg(h)
        return (s - s.detach()) + surrogate_primitive(sg.name, h.detach(), sg.width)

    return f


@pytest.mark.parametrize("cls", [Sigmoid, ATan, Triangle])
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_gradcheck_smooth_backward(cls: type[Surrogate], width: float, generator) -> None:
    h = torch.randn(64, generator=generator, dtype=torch.float64) * width
    if cls is Triangle:  # keep away from the kinks of g at h = 0 and |h| = γ
        kinks = torch.tensor([0.0, width, -width], dtype=torch.float64)
        h = h[(h[:, None] - kinks).abs().min(dim=1).values > 1e-3]
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(
        _primitive_with_surrogate_backward(cls(width=width)), (h,), eps=1e-6, atol=1e-7,
        rtol=1e-6,
    )


def test_gradcheck_detects_a_wrong_backward() -> None:
    # The check above can fail: a Sigmoid whose backward is twice too high is caught.
    class Doubled(Sigmoid):
        def derivative(self, h: torch.Tensor) -> torch.Tensor:
            return 2 * super().derivative(h)

    h = torch.linspace(-1, 1, 9, dtype=torch.float64, requires_grad=True)
    f = _primitive_with_surrogate_backward(Doubled(width=1.0))
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(f, (h,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", SHAPES)
def test_is_open_is_the_half_width_band(cls: type[Surrogate]) -> None:
    h = torch.tensor([-1.0, -0.5, -0.4, 0.0, 0.4, 0.5, 1.0])
    assert cls(width=1.0).is_open(h).tolist() == [False, False, True, True, True, False, False]
    assert cls(width=2.0).is_open(h).tolist() == [False, True, True, True, True, True, False]


def test_get_surrogate_by_name() -> None:
    for cls in SHAPES:
        sg = get_surrogate(cls.name, width=0.7)
        assert type(sg) is cls and sg.width == 0.7
        assert get_surrogate(cls.name.upper(), 0.7) == sg
    same = ATan(width=3.0)
    assert get_surrogate(same) is same
    assert sorted(surrogate.SURROGATES) == ["atan", "rectangle", "sigmoid", "triangle"]
    assert [cls.code for cls in SHAPES] == [0, 1, 2, 3]


def test_unknown_surrogate_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown surrogate 'gauss'.*atan, rectangle"):
        get_surrogate("gauss")


@pytest.mark.parametrize("width", [0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("cls", SHAPES)
def test_invalid_width_is_rejected(cls: type[Surrogate], width: float) -> None:
    with pytest.raises(ValueError, match="width"):
        cls(width=width)


def test_repr_equality_and_hash() -> None:
    assert repr(Rectangle(width=0.5)) == "Rectangle(width=0.5)"
    assert Triangle(1.0) == Triangle(width=1.0) and Triangle(1.0) != Sigmoid(1.0)
    assert Triangle(1.0) != Triangle(2.0)
    assert len({ATan(1.0), ATan(1.0), ATan(2.0)}) == 2


@pytest.mark.parametrize("cls", SHAPES)
def test_docstring_carries_the_derivative(cls: type[Surrogate]) -> None:
    assert "g(h) =" in cls.__doc__ and "γ" in cls.__doc__
