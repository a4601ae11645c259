"""Event streams: readers and writers for N-MNIST ``.bin``, AEDAT 2.0 (jAER, DVS128), AEDAT 3.1
(DVS128 Gesture) and AEDAT 4 (from :mod:`ilif.data.aedat4`), and an event-camera emulator that
turns static images into saccade events.

An event stream is a numpy structured array with fields ``t`` (int64, µs), ``x``, ``y`` (int16)
and ``p`` (int8, 0 = OFF, 1 = ON), the convention tonic uses. Readers validate everything they
decode and raise :class:`~ilif.data.errors.DatasetError` naming the file and the problem.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ilif.data.aedat4 import read_aedat4, write_aedat4
from ilif.data.errors import DatasetError
from ilif.data.eventcore import (
    EVENT_DTYPE,
    check_inside_sensor,
    check_writable,
    make_events,
    read_file_bytes,
    read_file_text,
)
from ilif.files import atomic_write

__all__ = [
    "EVENT_DTYPE", "make_events", "read_file_bytes", "read_file_text", "check_inside_sensor",
    "check_writable", "read_nmnist_bin", "write_nmnist_bin", "read_aedat2", "write_aedat2",
    "read_aedat31", "write_aedat31", "read_aedat4", "write_aedat4", "saccade_path",
    "from_images", "NMNIST_SENSOR", "DVS128_SENSOR",
]


NMNIST_SENSOR = (34, 34)  # (height, width) of the ATIS crop used by N-MNIST
DVS128_SENSOR = (128, 128)

AEDAT2_MAGIC = b"#!AER-DAT2.0"
AEDAT31_MAGIC = b"#!AER-DAT3.1"
AEDAT3_END_HEADER = b"#!END-HEADER"
AEDAT3_PACKET_HEADER = struct.Struct("<hhiiiiii")  # type, source, size, ts-offset, ts-overflow,
#                                                    capacity, number, valid
POLARITY_EVENT = 1


# ---------------------------------------------------------------------------------- N-MNIST
def read_nmnist_bin(path: str | Path, sensor_size: tuple[int, int] = NMNIST_SENSOR) -> np.ndarray:
    """Decode an N-MNIST ``.bin`` (also SLAYER ``.bs2``): 5 bytes (40 bits) per event,
    ``x = b0``, ``y = b1``, ``p = b2 >> 7``, ``t = (b2 & 0x7F) << 16 | b3 << 8 | b4`` (µs)."""
    path = Path(path)
    raw = read_file_bytes(path, "N-MNIST")
    if len(raw) % 5:
        raise DatasetError(f"N-MNIST file {path}: size {len(raw)} B is not a multiple of the "
                           f"5-byte event ({len(raw) % 5} trailing bytes): the file is truncated")
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = b[:, 0], b[:, 1]
    check_inside_sensor(path, "N-MNIST", x, y, sensor_size)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    return make_events(t, x, y, b[:, 2] >> 7)


def write_nmnist_bin(path: str | Path, events: np.ndarray) -> None:
    """Write events in the N-MNIST 40-bit format (inverse of :func:`read_nmnist_bin`)."""
    events = check_writable(events, {"x": 256, "y": 256, "p": 2, "t": 1 << 23}, "N-MNIST")
    t = events["t"].astype(np.int64)
    out = np.empty((len(events), 5), dtype=np.uint8)
    out[:, 0], out[:, 1] = events["x"], events["y"]
    out[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    out[:, 3], out[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    atomic_write(path, out.tobytes())


# ------------------------------------------------------------------------------ AEDAT 2.0
def _split_aedat2_header(raw: bytes, path: Path) -> int:
    """Byte offset of the first event: the header is the run of lines starting with ``#``."""
    if not raw.startswith(b"#!AER-DAT"):
        raise DatasetError(f"AEDAT 2.0 file {path}: malformed header, the file must start with "
                           f"{AEDAT2_MAGIC.decode()!r}, got {raw[:12]!r}")
    if not raw.startswith(AEDAT2_MAGIC):
        version = raw[9:12].decode("latin1")
        raise DatasetError(f"AEDAT 2.0 file {path}: unsupported AEDAT version {version!r} "
                           "(only 2.0 is read here; AEDAT 3.1 has read_aedat31)")
    offset = 0
    while raw[offset:offset + 1] == b"#":
        end = raw.find(b"\n", offset)
        if end < 0:
            raise DatasetError(f"AEDAT 2.0 file {path}: header line at byte {offset} never "
                               "ends (no newline): the file is truncated")
        offset = end + 1
    return offset


def read_aedat2(path: str | Path, sensor_size: tuple[int, int] = DVS128_SENSOR) -> np.ndarray:
    """Decode a jAER AEDAT 2.0 DVS128 file (raw CIFAR10-DVS): after the ``#`` header, big-endian
    ``>u4`` (address, timestamp µs) pairs; ``x = (a >> 1) & 0x7F``, ``y = (a >> 8) & 0x7F``,
    ``p = a & 1``. Addresses with bit 15 set are special (external) events and are dropped."""
    path = Path(path)
    raw = read_file_bytes(path, "AEDAT 2.0")
    offset = _split_aedat2_header(raw, path)
    body = len(raw) - offset
    if body % 8:
        raise DatasetError(f"AEDAT 2.0 file {path}: {body} bytes of events after the header is "
                           f"not a multiple of 8 ({body % 8} trailing bytes): truncated file")
    words = np.frombuffer(raw, dtype=">u4", offset=offset).reshape(-1, 2)
    address = words[:, 0].astype(np.int64)
    keep = (address & 0x8000) == 0
    address, timestamp = address[keep], words[keep, 1].astype(np.int64)
    x, y = (address >> 1) & 0x7F, (address >> 8) & 0x7F
    check_inside_sensor(path, "AEDAT 2.0", x, y, sensor_size)
    return make_events(timestamp, x, y, address & 1)


def write_aedat2(path: str | Path, events: np.ndarray,
                 comments: Sequence[str] = ("Data written by ilif.data.events.write_aedat2",
                                            "AEChip: ch.unizh.ini.jaer.chip.retina.DVS128")
                 ) -> None:
    """Write a DVS128 AEDAT 2.0 file (inverse of :func:`read_aedat2`)."""
    events = check_writable(events, {"x": 128, "y": 128, "p": 2, "t": 1 << 32}, "AEDAT 2.0")
    header = AEDAT2_MAGIC + b"\r\n" + b"".join(f"# {c}\r\n".encode() for c in comments)
    words = np.empty((len(events), 2), dtype=">u4")
    words[:, 0] = ((events["y"].astype(np.int64) << 8) | (events["x"].astype(np.int64) << 1)
                   | events["p"].astype(np.int64))
    words[:, 1] = events["t"]
    atomic_write(path, header + words.tobytes())


# ------------------------------------------------------------------------------ AEDAT 3.1
def _aedat31_body_offset(raw: bytes, path: Path) -> int:
    if not raw.startswith(b"#!AER-DAT3."):
        raise DatasetError(f"AEDAT 3.1 file {path}: malformed header, the file must start with "
                           f"{AEDAT31_MAGIC.decode()!r}, got {raw[:12]!r}")
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0 or raw[offset:offset + 1] != b"#":
            raise DatasetError(f"AEDAT 3.1 file {path}: malformed header, no "
                               f"{AEDAT3_END_HEADER.decode()!r} line before byte {offset}")
        line, offset = raw[offset:end], end + 1
        if line.rstrip(b"\r") == AEDAT3_END_HEADER:
            return offset


def read_aedat31(path: str | Path, sensor_size: tuple[int, int] = DVS128_SENSOR) -> np.ndarray:
    """Decode the polarity events of an AEDAT 3.1 file (DVS128 Gesture). After the header come
    packets: a 28-byte little-endian header (type, source, size, ts-offset, ts-overflow, capacity,
    number, valid) and ``capacity · size`` bytes. A polarity event (type 1, 8 bytes) is
    ``data: u32, ts: i32`` with ``valid = data & 1``, ``p = data >> 1 & 1``,
    ``y = data >> 2 & 0x7FFF``, ``x = data >> 17 & 0x7FFF``, ``t = overflow << 31 | ts``.
    Only the first ``number`` events of a packet are used, and invalid ones are dropped;
    packets of other types are skipped."""
    path = Path(path)
    raw = read_file_bytes(path, "AEDAT 3.1")
    offset = _aedat31_body_offset(raw, path)
    columns: list[tuple[np.ndarray, np.ndarray]] = []
    head = AEDAT3_PACKET_HEADER.size
    while offset < len(raw):
        if len(raw) - offset < head:
            raise DatasetError(f"AEDAT 3.1 file {path}: packet header at byte {offset} is cut "
                               f"({len(raw) - offset} of {head} bytes): the file is truncated")
        kind, _, size, ts_offset, overflow, capacity, number, valid = \
            AEDAT3_PACKET_HEADER.unpack_from(raw, offset)
        where = f"AEDAT 3.1 file {path}: packet at byte {offset}"
        if size <= 0 or capacity < 0 or not 0 <= valid <= number <= capacity or overflow < 0:
            raise DatasetError(f"{where} has an inconsistent header (size={size}, "
                               f"capacity={capacity}, number={number}, valid={valid}, "
                               f"ts-overflow={overflow})")
        start, end = offset + head, offset + head + capacity * size
        if end > len(raw):
            raise DatasetError(f"{where} runs past the end of the file ({capacity} × {size} B "
                               f"declared, {len(raw) - start} B left): the file is truncated")
        if kind == POLARITY_EVENT:
            if size != 8 or ts_offset != 4:
                raise DatasetError(f"{where}: polarity events must be 8 bytes with the "
                                   f"timestamp at byte 4, got size={size}, ts-offset={ts_offset}")
            pairs = np.frombuffer(raw, dtype="<u4", count=2 * number, offset=start)
            data = pairs[0::2].astype(np.int64)
            stamps = pairs[1::2].astype(np.int64)
            if (stamps >= 1 << 31).any():
                raise DatasetError(f"{where}: negative event timestamps")
            keep = (data & 1) == 1
            columns.append((data[keep], (overflow << 31) | stamps[keep]))
        offset = end
    data = np.concatenate([c[0] for c in columns]) if columns else np.zeros(0, np.int64)
    t = np.concatenate([c[1] for c in columns]) if columns else np.zeros(0, np.int64)
    x, y = (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF
    check_inside_sensor(path, "AEDAT 3.1", x, y, sensor_size)
    return make_events(t, x, y, (data >> 1) & 1)


def write_aedat31(path: str | Path, events: np.ndarray, events_per_packet: int = 4096,
                  source: str = "DVS128") -> None:
    """Write polarity events as AEDAT 3.1 (inverse of :func:`read_aedat31`): packets of at most
    ``events_per_packet`` valid events, split where ``t >> 31`` (the overflow) changes."""
    if events_per_packet < 1:
        raise ValueError(f"events_per_packet must be >= 1, got {events_per_packet}")
    events = check_writable(events, {"x": 1 << 15, "y": 1 << 15, "p": 2, "t": 1 << 62},
                             "AEDAT 3.1")
    header = (AEDAT31_MAGIC + b"\r\n#Format: RAW\r\n" + f"#Source 1: {source}\r\n".encode()
              + AEDAT3_END_HEADER + b"\r\n")
    t = events["t"].astype(np.int64)
    data = ((events["x"].astype(np.int64) << 17) | (events["y"].astype(np.int64) << 2)
            | (events["p"].astype(np.int64) << 1) | 1)
    overflow = t >> 31
    cuts = np.flatnonzero(np.diff(overflow)) + 1
    chunks = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(t)], strict=True):
        for a in range(int(lo), int(hi), events_per_packet):
            b = min(a + events_per_packet, int(hi))
            body = np.empty((b - a, 2), dtype="<u4")
            body[:, 0], body[:, 1] = data[a:b], t[a:b] & 0x7FFFFFFF
            chunks.append(AEDAT3_PACKET_HEADER.pack(POLARITY_EVENT, 1, 8, 4, int(overflow[a]),
                                                    b - a, b - a, b - a) + body.tobytes())
    atomic_write(path, header + b"".join(chunks))


# ------------------------------------------------------------------------------- emulator
def _shifted(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Bilinear sample ``I(y − dy, x − dx)`` with edge clamping (content moves by +dx, +dy)."""
    height, width = images.shape[-2:]
    ys = np.clip(np.arange(height) - dy, 0, height - 1)
    xs = np.clip(np.arange(width) - dx, 0, width - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = images[..., y0, :][..., x0] * (1 - wx) + images[..., y0, :][..., x1] * wx
    bottom = images[..., y1, :][..., x0] * (1 - wx) + images[..., y1, :][..., x1] * wx
    return top * (1 - wy) + bottom * wy


def saccade_path(shift: float, steps_per_saccade: int) -> np.ndarray:
    """Sensor offsets ``(dx, dy)`` along N-MNIST's three saccades, the triangle
    (0, 0) → (shift/2, shift) → (shift, 0) → (0, 0): ``3·steps + 1`` points."""
    corners = np.array([(0.0, 0.0), (shift / 2, shift), (shift, 0.0), (0.0, 0.0)])
    fractions = np.arange(steps_per_saccade) / steps_per_saccade
    legs = [a + fractions[:, None] * (b - a) for a, b in zip(corners[:-1], corners[1:],
                                                            strict=True)]
    return np.concatenate(legs + [corners[-1:]])


def from_images(images, threshold: float = 0.2, shift: float = 1.0, steps_per_saccade: int = 10,
                saccade_us: int = 100_000, log_eps: float = 0.1) -> list[np.ndarray]:
    """Emulate an event camera watching each image move along N-MNIST's saccade triangle.

    ``images``: ``[N, H, W]`` (or ``[H, W]``) intensities in ``[0, 1]`` (uint8 is divided by
    255). Each pixel keeps a reference log intensity ``r`` (initially ``L_0``); at each step
    ``L = log(log_eps + I_shifted)`` and ``n = ⌊|L − r| / threshold⌋`` events of polarity
    ``L > r`` are emitted, ``r ← r + sign(L − r)·n·threshold``. The ``n`` events of a step are
    spread evenly over that step's ``saccade_us / steps_per_saccade`` µs. Deterministic. Because
    the path returns to its start, every pixel emits as many ON as OFF events.
    Returns one event array (sorted by ``t``) per image.
    """
    frames = np.asarray(images)
    if frames.dtype == np.uint8:
        frames = frames / 255.0
    frames = frames.astype(np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [H, W], got shape {frames.shape}")
    if threshold <= 0 or log_eps <= 0 or steps_per_saccade < 1 or saccade_us < steps_per_saccade:
        raise ValueError("threshold and log_eps must be > 0, steps_per_saccade >= 1 and "
                         "saccade_us >= steps_per_saccade")
    if frames.size and frames.min() < 0:
        raise ValueError("images must be non-negative intensities")
    path = saccade_path(shift, steps_per_saccade)
    step_us = saccade_us / steps_per_saccade
    reference = np.log(log_eps + frames)
    parts: list[tuple[np.ndarray, ...]] = []
    for step, (dx, dy) in enumerate(path[1:], start=1):
        level = np.log(log_eps + _shifted(frames, dx, dy))
        change = level - reference
        counts = np.floor(np.abs(change) / threshold + 1e-9).astype(np.int64)
        reference += np.sign(change) * counts * threshold
        image, y, x = np.nonzero(counts)
        n = counts[image, y, x]
        if not len(n):
            continue
        rank = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # 0..n-1 within a pixel
        t = ((step - 1) * step_us + (rank + 1) * step_us / (np.repeat(n, n) + 1)).astype(np.int64)
        parts.append((np.repeat(image, n), t, np.repeat(x, n), np.repeat(y, n),
                      np.repeat((change[image, y, x] > 0).astype(np.int8), n)))
    columns = [np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64)
               for k in range(5)]
    order = np.lexsort((columns[1], columns[0]))
    image, t, x, y, p = (c[order] for c in columns)
    bounds = np.searchsorted(image, np.arange(len(frames) + 1))
    return [make_events(t[a:b], x[a:b], y[a:b], p[a:b]) for a, b in zip(bounds[:-1], bounds[1:],
                                                                        strict=True)]
