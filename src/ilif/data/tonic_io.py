"""tonic in and out: ilif's event arrays go into tonic transforms as they are, tonic's events and
datasets come into ilif's frames.

Both libraries use numpy structured arrays with fields ``t``, ``x``, ``y``, ``p``, addressed by
name. ilif's :data:`~ilif.data.events.EVENT_DTYPE` (``t`` int64 µs, ``x``/``y`` int16, ``p`` int8
0/1) is valid tonic input; a tonic array (fields in any order, ``int`` or ``bool`` polarity) becomes
an ilif array with :func:`events_from_tonic`. Sensor sizes differ in order: tonic's is
``(W, H, P)``, ilif's ``(H, W)`` (:func:`tonic_sensor_size`, :func:`ilif_sensor_size`).

:func:`from_tonic` wraps a tonic dataset (one giving ``(events, target)``) into ilif's ``(frames,
label)`` form with the on-disk frame cache. docs/data.md says where ilif's split by number and
tonic's ``ToFrame(n_event_bins=T)`` agree and differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ilif.data.errors import DatasetError
from ilif.data.eventcore import EVENT_DTYPE
from ilif.data.eventsets import EventFrameDataset, file_identity
from ilif.data.frames import FrameCache


def tonic_sensor_size(sensor_size: tuple[int, int], polarities: int = 2) -> tuple[int, int, int]:
    """ilif's ``(H, W)`` as tonic's ``(W, H, P)``."""
    height, width = sensor_size
    return (int(width), int(height), int(polarities))


def ilif_sensor_size(sensor_size: tuple[int, ...]) -> tuple[int, int]:
    """tonic's ``(W, H, P)`` as ilif's ``(H, W)``."""
    if len(sensor_size) != 3:
        raise ValueError(f"expected tonic's (W, H, P) sensor size, got {sensor_size!r}")
    return (int(sensor_size[1]), int(sensor_size[0]))


def events_from_tonic(events: np.ndarray) -> np.ndarray:
    """A tonic event array as :data:`~ilif.data.events.EVENT_DTYPE`, in the same order:
    ``p' = 1`` where ``p > 0`` (ON), else ``0`` (also for polarities stored as ``-1``/``+1``);
    times rounded to whole µs."""
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names is None or not {"t", "x", "y", "p"} <= set(names):
        raise DatasetError(
            "expected a tonic event array (a structured array with fields t, x, y, p), got "
            f"{type(events).__name__} with fields {names}; a tonic transform that makes frames "
            "must not be set on a dataset given to from_tonic"
        )
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    t = events["t"]
    out["t"] = np.rint(t) if np.issubdtype(t.dtype, np.floating) else t
    out["x"], out["y"] = events["x"], events["y"]
    out["p"] = np.asarray(events["p"]) > 0
    return out


def _sample_source(dataset: Any, index: int) -> dict[str, Any] | None:
    """The identity of sample ``index``'s file when the dataset lists files in ``data``."""
    data = getattr(dataset, "data", None)
    try:
        entry = data[index] if data is not None else None
    except (IndexError, KeyError, TypeError):
        return None
    if isinstance(entry, str | Path) and Path(entry).is_file():
        return file_identity(Path(entry))
    return None


def from_tonic(dataset: Any, T: int, split_by: str = "number",
               sensor_size: tuple[int, int] | None = None, size: tuple[int, int] | None = None,
               resize_mode: str = "map", cache_dir: str | Path | None = None,
               progress: bool = True) -> EventFrameDataset:
    """ilif's ``(x, y)`` view of a tonic dataset: ``x`` the float ``[T, 2, h, w]`` count frames
    of sample ``i``'s events (:func:`ilif.data.frames.integrate`, split by ``"number"`` or
    ``"time"``), ``y`` its integer target.

    ``sensor_size`` ``(H, W)`` defaults to the dataset's tonic ``sensor_size`` ``(W, H, P)``.
    The targets come from the dataset's ``targets`` when it has one entry per sample, else from
    reading each sample once. With ``cache_dir`` the frames are stored there, keyed by the
    dataset class, its ``transform``, the sample index, the sample's file (size, mtime) when the
    dataset lists files in ``data``, and the frame parameters.
    """
    if sensor_size is None:
        tonic_size = getattr(dataset, "sensor_size", None)
        if tonic_size is None:
            raise ValueError(f"{type(dataset).__name__} has no sensor_size; pass "
                             "sensor_size=(height, width)")
        sensor_size = ilif_sensor_size(tonic_size)
    targets = getattr(dataset, "targets", None)
    if targets is None or len(targets) != len(dataset):
        targets = [dataset[i][1] for i in tqdm(range(len(dataset)), desc="tonic: targets",
                                                disable=not progress)]
    labels = [int(np.asarray(t).item()) for t in targets]
    classes = list(getattr(dataset, "classes", None) or [str(c) for c in sorted(set(labels))])
    name = f"tonic:{type(dataset).__name__}"

    def load(index: int) -> np.ndarray:
        return events_from_tonic(dataset[index][0])

    def key(index: int) -> dict[str, Any]:
        return {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
                "location": str(getattr(dataset, "location_on_system", "")),
                "transform": repr(getattr(dataset, "transform", None)),
                "index": index, "file": _sample_source(dataset, index)}

    cache = None
    if cache_dir is not None:
        Path(cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
        cache = FrameCache(cache_dir)
    return EventFrameDataset(name, labels, classes, load, key, tuple(sensor_size), int(T),
                             split_by=split_by, size=size, resize_mode=resize_mode, cache=cache)
