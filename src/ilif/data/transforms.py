"""Image augmentation written with torch ops, acting on the last two (H, W) dimensions.

Each transform is a callable ``tensor -> tensor``; randomness comes from torch's global generator
(seeded per DataLoader worker by torch) or from an explicit ``generator``. Because only the last two
dimensions are touched, the same transforms apply to images ``[C, H, W]`` and to event frames
``[T, C, H, W]`` (the same crop, flip and cut for every time step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator | None, high: int) -> int:
    """A random integer in ``[0, high]`` (inclusive)."""
    return int(torch.randint(0, high + 1, (), generator=generator))


class Compose:
    """Apply transforms in order: ``x ← f_k(… f_1(x))``."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then cut a random ``size`` window:
    ``out[..., i, j] = pad(x)[..., top + i, left + j]``, top, left uniform in
    ``[0, H + 2p − size]``."""

    def __init__(self, size: int | tuple[int, int], padding: int = 4,
                 generator: torch.Generator | None = None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        out_h, out_w = self.size
        free_h, free_w = padded.shape[-2] - out_h, padded.shape[-1] - out_w
        if free_h < 0 or free_w < 0:
            raise ValueError(f"crop size {self.size} larger than the padded input "
                             f"{tuple(padded.shape[-2:])}")
        top, left = _randint(self.generator, free_h), _randint(self.generator, free_w)
        return padded[..., top:top + out_h, left:left + out_w]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """With probability ``p`` mirror the width axis: ``out[..., j] = x[..., W − 1 − j]``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _uniform(self.generator) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Cutout:
    """torchtoolbox's ``Cutout`` (its defaults): with probability ``p`` draw an area fraction
    ``s ~ U(scale)`` and aspect ``r ~ U(ratio)``, cut ``h = ⌊√(s·H·W·r)⌋`` rows by
    ``w = ⌊√(s·H·W / r)⌋`` columns at a uniform position and fill them with one grey level
    ``c ~ U{0, …, 255} / 255`` in every channel (``value=(0, 255)``; a float gives a fixed fill).
    Applied to ``[0, 1]`` images before normalisation, as in the paper's pipeline."""

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.4),
                 ratio: tuple[float, float] = (0.4, 1 / 0.4),
                 value: float | tuple[int, int] = (0, 255),
                 generator: torch.Generator | None = None):
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value
        self.generator = generator

    def rectangle(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw ``(top, left, h, w)`` of the cut (clipped to the image)."""
        area = height * width * _uniform(self.generator, *self.scale)
        aspect = _uniform(self.generator, *self.ratio)
        h = min(int(math.sqrt(area * aspect)), height)
        w = min(int(math.sqrt(area / aspect)), width)
        return _randint(self.generator, height - h), _randint(self.generator, width - w), h, w

    def fill(self) -> float:
        if isinstance(self.value, tuple):
            low, high = self.value
            return (low + _randint(self.generator, high - low)) / 255.0
        return float(self.value)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _uniform(self.generator) >= self.p:
            return x
        top, left, h, w = self.rectangle(x.shape[-2], x.shape[-1])
        out = x.clone()
        out[..., top:top + h, left:left + w] = self.fill()
        return out

    def __repr__(self) -> str:
        return f"Cutout(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value!r})"


class Normalize:
    """Per-channel standardisation ``out[c] = (x[c] − mean[c]) / std[c]`` (channel axis −3)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != self.mean.shape[0]:
            raise ValueError(f"Normalize expects {self.mean.shape[0]} channels at dim -3, "
                             f"got shape {tuple(x.shape)}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
