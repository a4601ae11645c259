"""Surrogate gradients parametrised by their width γ (docs/neurons.md).

The forward pass of every surrogate is the exact Heaviside step ``S = Θ(h)`` with ``Θ(0) = 1``.
The backward pass replaces ``dΘ/dh`` by a derivative ``g(h)`` of unit area and peak ``1/γ``:

- ``Rectangle(γ)``: ``g = 1/γ`` for ``|h| < γ/2`` (support γ, the paper's γ)
- ``Triangle(γ)``:  ``g = (1/γ)·max(0, 1 − |h|/γ)`` (support 2γ)
- ``Sigmoid(γ)``:   ``g = d/dh σ(4h/γ)``
- ``ATan(γ)``:      ``g = d/dh [(1/π)·arctan(πh/γ) + 1/2] = (1/γ) / (1 + (πh/γ)²)``

A neuron-step is *gradient-open* when ``|h| < γ/2``, for every shape.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "Surrogate",
    "Rectangle",
    "Triangle",
    "Sigmoid",
    "ATan",
    "SURROGATES",
    "get_surrogate",
    "heaviside",
]


def heaviside(h: Tensor) -> Tensor:
    """Θ(h) with Θ(0) = 1, in the dtype of ``h``."""
    return (h >= 0).to(h.dtype)


class _SpikeFunction(torch.autograd.Function):
    """Forward: Θ(h). Backward: ``grad · g(h)`` with the surrogate's derivative ``g``."""

    @staticmethod
    def forward(ctx, h: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h)
        ctx.surrogate = surrogate
        return heaviside(h)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(h), None


class Surrogate:
    """Base class: a Heaviside forward with a width-γ surrogate derivative backward.

    Subclasses implement :meth:`derivative`. ``code`` identifies the shape for fused kernels.
    """

    name: str = ""
    code: int = -1

    def __init__(self, width: float = 1.0) -> None:
        width = float(width)
        if not math.isfinite(width) or width <= 0:
            raise ValueError(f"surrogate width must be a finite number > 0, got width={width!r}")
        self.width = width

    def derivative(self, h: Tensor) -> Tensor:
        """The surrogate derivative g(h) (unit area, peak 1/γ)."""
        raise NotImplementedError

    def is_open(self, h: Tensor) -> Tensor:
        """Gradient-open mask ``|h| < γ/2`` (docs/neurons.md), the same for every shape."""
        return h.abs() < 0.5 * self.width

    def __call__(self, h: Tensor) -> Tensor:
        return _SpikeFunction.apply(h, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(width={self.width:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.width == other.width  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.width))


class Rectangle(Surrogate):
    """g(h) = 1/γ · 1[|h| < γ/2]."""

    name = "rectangle"
    code = 0

    def derivative(self, h: Tensor) -> Tensor:
        return (h.abs() < 0.5 * self.width).to(h.dtype) / self.width


class Triangle(Surrogate):
    """g(h) = (1/γ)·max(0, 1 − |h|/γ)."""

    name = "triangle"
    code = 1

    def derivative(self, h: Tensor) -> Tensor:
        return (1.0 - h.abs() / self.width).clamp(min=0) / self.width


class Sigmoid(Surrogate):
    """g(h) = (4/γ)·σ(4h/γ)·(1 − σ(4h/γ)), the derivative of σ(4h/γ)."""

    name = "sigmoid"
    code = 2

    def derivative(self, h: Tensor) -> Tensor:
        sig = torch.sigmoid(4.0 * h / self.width)
        return (4.0 / self.width) * sig * (1.0 - sig)


class ATan(Surrogate):
    """g(h) = (1/γ) / (1 + (πh/γ)²), the derivative of (1/π)·arctan(πh/γ) + 1/2."""

    name = "atan"
    code = 3

    def derivative(self, h: Tensor) -> Tensor:
        return 1.0 / (self.width * (1.0 + (math.pi * h / self.width) ** 2))


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (Rectangle, Triangle, Sigmoid, ATan)
}


def get_surrogate(name: str | Surrogate, width: float = 1.0) -> Surrogate:
    """A surrogate by name (``rectangle``, ``triangle``, ``sigmoid``, ``atan``) and width."""
    if isinstance(name, Surrogate):
        return name
    key = str(name).lower()
    if key not in SURROGATES:
        raise ValueError(
            f"unknown surrogate {name!r}; valid names: {', '.join(sorted(SURROGATES))}"
        )
    return SURROGATES[key](width=width)
