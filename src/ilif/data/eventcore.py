"""The event array and the checks every event reader and writer shares (:mod:`ilif.data.events`,
:mod:`ilif.data.aedat4`): fields ``t`` (int64, µs), ``x``, ``y`` (int16), ``p`` (int8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ilif.data.errors import DatasetError, DatasetNotFoundError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])


def make_events(t, x, y, p) -> np.ndarray:
    """Pack equal-length columns into an :data:`EVENT_DTYPE` array."""
    t = np.asarray(t)
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, p
    return events


def read_file_bytes(path: str | Path, what: str) -> bytes:
    """The whole file; a missing or unreadable file is a ``DatasetError`` naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{what} file {path} does not exist") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {what} file {path}: {exc}") from exc


def read_file_text(path: str | Path, what: str) -> str:
    """The whole file as UTF-8 text; a missing, unreadable or undecodable file is a
    ``DatasetError`` naming it."""
    try:
        return read_file_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"cannot read {what} file {path}: not UTF-8 text ({exc})") from exc


def check_inside_sensor(path: Path, what: str, x: np.ndarray, y: np.ndarray,
                        sensor_size: tuple[int, int]) -> None:
    """Raise ``DatasetError`` unless every ``x < width`` and ``y < height``."""
    height, width = sensor_size
    outside = (x >= width) | (y >= height)
    if outside.any():
        first = int(np.argmax(outside))
        raise DatasetError(f"{what} file {path}: {int(outside.sum())} events outside the "
                           f"{height}×{width} sensor (first: event {first} at x={int(x[first])}, "
                           f"y={int(y[first])}); the file is corrupted or not from this sensor")


def check_writable(events: np.ndarray, limits: dict[str, int], what: str) -> np.ndarray:
    """Events for a writer: fields t, x, y, p, each field in ``[0, limits[field])``."""
    events = np.asarray(events)
    if events.dtype.names is None or not {"t", "x", "y", "p"} <= set(events.dtype.names):
        raise ValueError(f"{what}: events must be a structured array with fields t, x, y, p")
    for field, limit in limits.items():
        column = events[field].astype(np.int64)
        if len(column) and (column.min() < 0 or column.max() >= limit):
            raise ValueError(f"{what}: field {field!r} must lie in [0, {limit}), got "
                             f"[{column.min()}, {column.max()}]")
    return events
