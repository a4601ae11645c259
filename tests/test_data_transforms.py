"""Augmentation transforms (torch ops) against hand-computed expectations."""

from __future__ import annotations

import math

import pytest
import torch

from ilif.data.transforms import Compose, Cutout, Normalize, RandomCrop, RandomHorizontalFlip


def test_random_crop_is_a_window_of_the_zero_padded_input():
    x = torch.arange(1, 2 * 6 * 5 + 1, dtype=torch.float32).reshape(2, 6, 5)
    padded = torch.zeros(2, 14, 13)
    padded[:, 4:10, 4:9] = x
    crop = RandomCrop((6, 5), padding=4, generator=torch.Generator().manual_seed(0))
    offsets = set()
    for _ in range(200):
        out = crop(x)
        assert out.shape == (2, 6, 5)
        matches = [(i, j) for i in range(9) for j in range(9)
                   if torch.equal(out, padded[:, i:i + 6, j:j + 5])]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 40  # offsets are spread over the 9 × 9 possibilities
    frames = torch.rand(3, 2, 6, 5)  # [T, C, H, W]: one window for every time step
    out = RandomCrop((6, 5), padding=1)(frames)
    assert out.shape == frames.shape


def test_flip_probability_extremes_and_rate():
    x = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x[..., [3, 2, 1, 0]])
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)
    flip = RandomHorizontalFlip(generator=torch.Generator().manual_seed(1))
    flipped = sum(not torch.equal(flip(x), x) for _ in range(2000))
    assert abs(flipped / 2000 - 0.5) < 0.05


def test_cutout_erases_one_rectangle_as_torchtoolbox_draws_it():
    cut = Cutout(p=1.0, value=0.0, generator=torch.Generator().manual_seed(2))
    x = torch.ones(3, 32, 32)
    for _ in range(300):
        out = cut(x)
        zero = (out == 0).all(dim=0)
        h, w = int(zero.any(dim=1).sum()), int(zero.any(dim=0).sum())
        assert int(zero.sum()) == h * w  # a single filled rectangle, same in every channel
        assert (out == 0).sum() == 3 * h * w
        # h = ⌊√(s·A·r)⌋, w = ⌊√(s·A/r)⌋ with s ∈ [0.02, 0.4], r ∈ [0.4, 2.5], A = 1024:
        # h·w ≤ s·A ≤ (h + 1)(w + 1) and h / (w + 1) ≤ r ≤ (h + 1) / w
        assert h * w <= 0.4 * 1024 and (h + 1) * (w + 1) >= 0.02 * 1024
        assert h / (w + 1) <= 2.5 and (h + 1) / w >= 0.4
    assert torch.equal(Cutout(p=0.0)(x), x)
    assert torch.equal(x, torch.ones(3, 32, 32))  # the input is not modified in place


def test_cutout_rate_and_grey_fill():
    cut = Cutout(generator=torch.Generator().manual_seed(3))
    x = torch.full((3, 16, 16), 5.0)
    changed = sum(not torch.equal(cut(x), x) for _ in range(2000))
    assert abs(changed / 2000 - 0.5) < 0.05
    always = Cutout(p=1.0, generator=torch.Generator().manual_seed(4))
    levels = set()
    for _ in range(50):
        out = always(x)
        erased = out[out != 5.0]
        assert len(erased) % 3 == 0 and len(erased) > 0
        level = float(erased[0]) * 255
        assert torch.all(erased == erased[0]) and abs(level - round(level)) < 1e-3
        levels.add(round(level))
    assert len(levels) > 25 and min(levels) >= 0 and max(levels) <= 255


def test_normalize_per_channel():
    x = torch.tensor([[[0.5]], [[1.0]]])
    out = Normalize((0.25, 0.5), (0.5, 0.25))(x)
    assert torch.allclose(out.flatten(), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="3 channels"):
        Normalize((0, 0, 0), (1, 1, 1))(x)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize((0,), (0,))


def test_compose_applies_in_order():
    steps = Compose([lambda t: t + 1, lambda t: t * 3])
    assert float(steps(torch.tensor(1.0))) == 6.0
    assert math.isclose(float(Compose([])(torch.tensor(2.0))), 2.0)
