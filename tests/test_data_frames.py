"""Event → frame integration (conservation, SpikingJelly as oracle, resize) and the frame cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import spikingjelly_functions

from ilif import files
from ilif.data import events as ev
from ilif.data import frames
from ilif.data.frames import FrameCache, frame_index, integrate


def random_events(n, height=128, width=128, seed=0):
    rng = np.random.default_rng(seed)
    return ev.make_events(np.sort(rng.integers(0, 5_000_000, n)), rng.integers(0, width, n),
                          rng.integers(0, height, n), rng.integers(0, 2, n))


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("T", [1, 7, 20])
def test_frames_match_spikingjelly(split_by, T):
    peer = spikingjelly_functions("integrate_events_segment_to_frame",
                                  "cal_fixed_frames_number_segment_index",
                                  "integrate_events_by_fixed_frames_number")
    events = random_events(5003, seed=T)
    mine = integrate(events, T, (128, 128), split_by=split_by)
    reference = peer["integrate_events_by_fixed_frames_number"](
        {k: events[k] for k in "txyp"}, split_by, T, 128, 128)
    assert mine.shape == (T, 2, 128, 128) and mine.dtype == np.float32
    np.testing.assert_array_equal(mine, reference)


def test_split_rules_on_hand_examples():
    # number: 10 events, T=3 → ⌊10/3⌋ = 3 per frame, the last takes the remaining 4
    assert frame_index(np.arange(10), 3, "number").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    # fewer events than frames: all in the last frame (SpikingJelly's rule)
    assert frame_index(np.arange(2), 4, "number").tolist() == [3, 3]
    # time: t in [100, 190], T=3 → Δ = 30: [100,130) [130,160) [160,190]
    t = np.array([100, 129, 130, 159, 160, 190])
    assert frame_index(t, 3, "time").tolist() == [0, 0, 1, 1, 2, 2]
    # span shorter than T: ⌊(t − t0)·T / (span + 1)⌋
    assert frame_index(np.array([5, 6, 7]), 6, "time").tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="split_by"):
        frame_index(t, 3, "count")


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("size", [None, (48, 48), (34, 20)])
def test_frames_conserve_events(split_by, size):
    events = random_events(3001, seed=1)
    out = integrate(events, 10, (128, 128), split_by=split_by, size=size)
    assert out.shape[-2:] == (size or (128, 128))
    assert out.sum() == len(events)
    assert out[:, 1].sum() == int(events["p"].sum())


def test_mapped_resize_on_hand_example():
    events = ev.make_events([0, 1, 2], [127, 0, 64], [0, 127, 2], [1, 0, 1])
    out = integrate(events, 1, (128, 128), size=(48, 48))
    # x' = ⌊x·48/128⌋: 127 → 47, 64 → 24; y' likewise: 127 → 47, 2 → 0
    assert out[0, 1, 0, 47] == 1 and out[0, 0, 47, 0] == 1 and out[0, 1, 0, 24] == 1


def test_interpolating_resize():
    y, x = np.mgrid[0:128, 0:128]
    events = ev.make_events(np.arange(128 * 128), x.ravel(), y.ravel(), np.ones(128 * 128))
    out = integrate(events, 1, (128, 128), size=(48, 48), resize_mode="interpolate")
    np.testing.assert_allclose(out[0, 1], 1.0, atol=1e-5)  # a constant frame stays constant
    assert out[0, 0].sum() == 0
    sparse = random_events(500, seed=4)
    full = integrate(sparse, 2, (128, 128))
    expected = F.interpolate(torch.from_numpy(full), size=(48, 48), mode="bilinear",
                             align_corners=False, antialias=True).numpy()
    np.testing.assert_allclose(
        integrate(sparse, 2, (128, 128), size=(48, 48), resize_mode="interpolate"), expected)


def test_integrate_rejects_events_outside_sensor():
    with pytest.raises(ValueError, match="outside the 34×34 sensor"):
        integrate(ev.make_events([0], [34], [0], [0]), 2, (34, 34))


# ----------------------------------------------------------------------------- cache
def test_cache_computes_once_and_keys_every_parameter(tmp_path):
    cache = FrameCache(tmp_path)
    calls = []
    value = np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3)

    def compute():
        calls.append(1)
        return value

    key = {"sample": "a", "T": 2}
    np.testing.assert_array_equal(cache.get(key, compute), value)
    np.testing.assert_array_equal(cache.get(dict(reversed(key.items())), compute), value)
    assert len(calls) == 1
    assert cache.path({"sample": "a", "T": 3}) != cache.path(key)
    cache.get({"sample": "a", "T": 3}, compute)
    assert len(calls) == 2
    big = np.full((1, 2, 1, 1), 70_000.5, dtype=np.float32)  # non-integer: kept as float32
    np.testing.assert_array_equal(cache.get({"k": "big"}, lambda: big), big)


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    cache = FrameCache(tmp_path)
    key = {"sample": "b"}

    def crash(src, dst):
        raise KeyboardInterrupt("power cut before the rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.get(key, lambda: np.ones((1, 2, 2, 2), np.float32))
    monkeypatch.undo()
    assert not cache.path(key).exists()
    assert list(tmp_path.rglob("*.tmp")) == []  # the partial temporary file is removed
    assert cache.load(key) is None
    np.testing.assert_array_equal(cache.get(key, lambda: np.zeros((1, 2, 2, 2), np.float32)), 0)


def test_partial_or_foreign_entry_is_a_miss(tmp_path):
    cache = FrameCache(tmp_path)
    key = {"sample": "c"}
    path = cache.save(key, np.ones((2, 2, 3, 3), np.float32))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # what a non-atomic writer could leave behind
    assert cache.load(key) is None
    np.testing.assert_array_equal(cache.get(key, lambda: np.full((2, 2, 3, 3), 2.0)), 2.0)
    other = {"sample": "d"}
    cache.path(other).parent.mkdir(parents=True, exist_ok=True)
    cache.path(other).write_bytes(cache.path(key).read_bytes())  # entry stored under wrong key
    assert cache.load(other) is None
    assert frames.cache_key_digest(key) != frames.cache_key_digest(other)
