"""Event → frame integration and the on-disk frame cache.

``integrate`` counts events into ``T`` frames with 2 polarity channels. Frames are split by event
count (SpikingJelly's ``split_by='number'``, the paper's "split by number") or by equal time
windows (``'time'``), optionally resized by mapping coordinates onto the smaller grid (events are
conserved) or by bilinear interpolation of the full-size frames.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ilif.files import atomic_write

SPLIT_BY = ("number", "time")
RESIZE_MODES = ("map", "interpolate")
CACHE_FORMAT = 1  # bump when the stored layout or the integration rule changes


def frame_index(t: np.ndarray, T: int, split_by: str = "number") -> np.ndarray:
    """Frame of each event (events in stream order).

    ``number``: ``f_i = min(⌊i / ⌊N/T⌋⌋, T − 1)`` (the last frame takes the remainder; with
    ``N < T`` every event lands in the last frame, as in SpikingJelly).
    ``time``: with ``Δ = ⌊(t_max − t_min) / T⌋``, ``f_i = min(⌊(t_i − t_min) / Δ⌋, T − 1)``;
    when ``Δ = 0``, ``f_i = ⌊(t_i − t_min)·T / (t_max − t_min + 1)⌋``.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if split_by == "number":
        per_frame = n // T
        if per_frame == 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum(np.arange(n) // per_frame, T - 1)
    t = np.asarray(t, dtype=np.int64)
    start, span = int(t.min()), int(t.max() - t.min())
    width = span // T
    if width > 0:
        return np.minimum((t - start) // width, T - 1)
    return (t - start) * T // (span + 1)


def integrate(events: np.ndarray, T: int, sensor_size: tuple[int, int], split_by: str = "number",
              size: tuple[int, int] | None = None, resize_mode: str = "map") -> np.ndarray:
    """Event-count frames ``[T, 2, h, w]`` (float32): ``F[f, p, y', x'] = #{events i : f_i = f,
    p_i = p, y'_i = y', x'_i = x'}``. With ``size = (h, w)`` and ``resize_mode='map'``,
    ``y' = ⌊y·h / H⌋``, ``x' = ⌊x·w / W⌋`` (the frames still sum to the event count);
    ``'interpolate'`` counts at ``(H, W)`` and resizes bilinearly (antialiased), which does not
    conserve the count. ``sensor_size = (H, W)``."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    height, width = sensor_size
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    if len(events) and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height
                        or p.min() < 0 or p.max() > 1):
        raise ValueError(f"events outside the {height}×{width} sensor or polarity not 0/1")
    f = frame_index(events["t"], T, split_by)
    out_h, out_w = (height, width) if size is None else size
    if size is not None and resize_mode == "map":
        y, x = y * out_h // height, x * out_w // width
        grid_h, grid_w = out_h, out_w
    else:
        grid_h, grid_w = height, width
    flat = ((f * 2 + p) * grid_h + y) * grid_w + x
    # one pass over the events straight into float32 counts (exact below 2²⁴ per pixel)
    counts = torch.zeros(T * 2 * grid_h * grid_w, dtype=torch.float32)
    counts.index_add_(0, torch.from_numpy(flat), torch.ones(len(flat), dtype=torch.float32))
    frames = counts.reshape(T, 2, grid_h, grid_w).numpy()
    if (grid_h, grid_w) != (out_h, out_w):
        frames = F.interpolate(torch.from_numpy(frames), size=(out_h, out_w), mode="bilinear",
                               align_corners=False, antialias=True).numpy()
    return frames


# ------------------------------------------------------------------------------------ cache
def cache_key_digest(key: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``key`` (every parameter that changes the frames)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _compact(frames: np.ndarray) -> np.ndarray:
    """Store integer counts in the smallest unsigned type that holds them."""
    if frames.size and np.array_equal(frames, np.round(frames)) and frames.min() >= 0:
        top = frames.max()
        for dtype in (np.uint8, np.uint16, np.uint32):
            if top <= np.iinfo(dtype).max:
                return frames.astype(dtype)
    return frames.astype(np.float32)


class FrameCache:
    """Integrated frames on disk, one compressed ``.npz`` per key under ``directory``.

    An entry holds the frames and the JSON of its key; it is written to a temporary file in the
    same folder and renamed into place (``os.replace``), so an interrupted write never leaves an
    entry at the final path. An unreadable entry, or one whose stored key differs, is a miss and
    is recomputed."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def path(self, key: dict[str, Any]) -> Path:
        digest = cache_key_digest(key)
        return self.directory / digest[:2] / f"{digest}.npz"

    def load(self, key: dict[str, Any]) -> np.ndarray | None:
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) != json.dumps(key, sort_keys=True):
                    return None
                return stored["frames"].astype(np.float32)
        except Exception:  # missing, truncated or foreign file: recompute
            return None

    def save(self, key: dict[str, Any], frames: np.ndarray) -> Path:
        path = self.path(key)
        atomic_write(path, lambda handle: np.savez_compressed(
            handle, frames=_compact(frames), key=np.array(json.dumps(key, sort_keys=True))))
        return path

    def get(self, key: dict[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached frames for ``key``, computing and storing them on a miss."""
        frames = self.load(key)
        if frames is None:
            frames = np.asarray(compute(), dtype=np.float32)
            self.save(key, frames)
        return frames
