"""AEDAT 4.0 (DV / dv-processing) polarity events, the container of the converted CIFAR10-DVS
release: read and write.

Layout: ``#!AER-DAT4.0\\r\\n``, an int32 size and an ``IOHE`` flatbuffer (compression, data-table
position, an XML info node naming each stream's ``typeIdentifier`` and sensor ``sizeX``/``sizeY``),
then packets ``(int32 stream id, int32 size, size bytes)``, each a size-prefixed flatbuffer
(``EVTS`` for events; LZ4-frame compressed when the header says LZ4) whose table's first field is
a vector of 16-byte structs ``{int64 t; int16 x; int16 y; bool on; 3 pad}``. Packets end at the
data-table position (or at the end of the file when it is −1).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ilif.data.errors import DatasetError
from ilif.data.eventcore import check_inside_sensor, check_writable, make_events, read_file_bytes
from ilif.files import atomic_write

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {0: "none", 1: "lz4", 2: "lz4-high"}  # 3, 4: zstd (not read here)
EVENT_STRUCT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"),
                         ("pad", "V3")])


class _Flat:
    """Bounds-checked reads of a flatbuffer held in ``buf``; failures raise ``DatasetError``."""

    def __init__(self, buf: bytes, where: str):
        self.buf, self.where = buf, where

    def _unpack(self, fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.buf):
            raise DatasetError(f"{self.where}: flatbuffer offset {pos} outside its "
                               f"{len(self.buf)} bytes")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def root(self, identifier: bytes) -> int:
        if self.buf[4:8] != identifier:
            raise DatasetError(f"{self.where}: expected a {identifier.decode()} table, got "
                               f"{bytes(self.buf[4:8])!r}")
        return self._unpack("<I", 0)

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table`` (None when absent)."""
        vtable = table - self._unpack("<i", table)
        vt_size = self._unpack("<H", vtable)
        if 4 + 2 * index >= vt_size:
            return None
        offset = self._unpack("<H", vtable + 4 + 2 * index)
        return table + offset if offset else None

    def indirect(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def scalar(self, fmt: str, pos: int | None, default: int) -> int:
        return default if pos is None else self._unpack(fmt, pos)

    def string(self, pos: int) -> bytes:
        start = self.indirect(pos)
        length = self._unpack("<I", start)
        if start + 4 + length > len(self.buf):
            raise DatasetError(f"{self.where}: string runs past the end of its flatbuffer")
        return bytes(self.buf[start + 4:start + 4 + length])


def _event_stream(info: bytes, path: Path) -> tuple[int, tuple[int, int] | None]:
    """(stream id, (height, width)) of the ``EVTS`` output named in the XML info node."""
    try:
        tree = ET.fromstring(info.rstrip(b"\x00").decode("utf-8"))
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise DatasetError(f"AEDAT 4.0 file {path}: malformed XML info node ({exc})") from exc
    for node in tree.iter("node"):
        attrs = {a.get("key"): a.text for a in node.findall("attr")}
        if attrs.get("typeIdentifier") == "EVTS":
            sizes = {a.get("key"): a.text for a in node.iter("attr")}
            try:
                stream = int(node.get("name", ""))
                size = ((int(sizes["sizeY"]), int(sizes["sizeX"]))
                        if "sizeX" in sizes and "sizeY" in sizes else None)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"AEDAT 4.0 file {path}: bad event stream id or size in "
                                   "the info node") from exc
            return stream, size
    raise DatasetError(f"AEDAT 4.0 file {path}: the info node declares no EVTS (event) stream")


def read_aedat4(path: str | Path, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Polarity events of an AEDAT 4.0 file (``t`` as stored, absolute µs). ``sensor_size``
    (height, width) defaults to the stream's ``sizeY``/``sizeX``; events outside it are an
    error."""
    import lz4.frame

    path = Path(path)
    raw = read_file_bytes(path, "AEDAT 4.0")
    if not raw.startswith(AEDAT4_MAGIC):
        raise DatasetError(f"AEDAT 4.0 file {path}: malformed header, the file must start with "
                           f"'#!AER-DAT4.0', got {raw[:12]!r}")
    pos = len(AEDAT4_MAGIC)
    if len(raw) < pos + 4:
        raise DatasetError(f"AEDAT 4.0 file {path}: truncated before the header table")
    size = struct.unpack_from("<i", raw, pos)[0]
    if not 8 <= size <= len(raw) - pos - 4:
        raise DatasetError(f"AEDAT 4.0 file {path}: header table size {size} does not fit "
                           "the file: truncated or corrupted")
    header = _Flat(raw[pos + 4:pos + 4 + size], f"AEDAT 4.0 file {path}: header")
    table = header.root(b"IOHE")
    compression = header.scalar("<i", header.field(table, 0), 0)
    data_table = header.scalar("<q", header.field(table, 1), -1)
    info_pos = header.field(table, 2)
    if info_pos is None:
        raise DatasetError(f"AEDAT 4.0 file {path}: the header has no info node")
    stream, declared = _event_stream(header.string(info_pos), path)
    if compression not in COMPRESSION:
        raise DatasetError(f"AEDAT 4.0 file {path}: compression {compression} is not supported "
                           "(only none and LZ4; zstd files need conversion)")
    sensor = sensor_size or declared
    if sensor is None:
        raise DatasetError(f"AEDAT 4.0 file {path}: no sensor size in the info node; pass "
                           "sensor_size=(height, width)")
    end = len(raw) if data_table < 0 else data_table
    if end > len(raw):
        raise DatasetError(f"AEDAT 4.0 file {path}: data table position {end} lies past the "
                           f"end of the file ({len(raw)} B): truncated")
    pos += 4 + size
    parts = []
    while pos < end:
        if end - pos < 8:
            raise DatasetError(f"AEDAT 4.0 file {path}: packet header at byte {pos} is cut")
        stream_id, length = struct.unpack_from("<ii", raw, pos)
        where = f"AEDAT 4.0 file {path}: packet at byte {pos}"
        if length < 0 or pos + 8 + length > end:
            raise DatasetError(f"{where} runs past the end of the data ({length} B declared, "
                               f"{end - pos - 8} B left): truncated or corrupted")
        body = raw[pos + 8:pos + 8 + length]
        pos += 8 + length
        if stream_id != stream:
            continue
        if compression:
            try:
                body = lz4.frame.decompress(body)
            except Exception as exc:  # lz4 raises RuntimeError subclasses on bad frames
                raise DatasetError(f"{where}: LZ4 data cannot be decompressed ({exc})") from exc
        if len(body) < 4 or struct.unpack_from("<I", body, 0)[0] != len(body) - 4:
            raise DatasetError(f"{where}: size prefix does not match the packet")
        packet = _Flat(body[4:], where)
        events_pos = packet.field(packet.root(b"EVTS"), 0)
        if events_pos is None:
            continue
        vector = packet.indirect(events_pos)
        count = packet.scalar("<I", vector, 0)
        start = 4 + vector + 4
        if start + count * EVENT_STRUCT.itemsize > len(body):
            raise DatasetError(f"{where}: {count} events declared, more than the packet holds")
        parts.append(np.frombuffer(body, dtype=EVENT_STRUCT, count=count, offset=start))
    stored = np.concatenate(parts) if parts else np.zeros(0, EVENT_STRUCT)
    x, y = stored["x"].astype(np.int64), stored["y"].astype(np.int64)
    if len(stored) and (x.min() < 0 or y.min() < 0):
        raise DatasetError(f"AEDAT 4.0 file {path}: negative event coordinates")
    check_inside_sensor(path, "AEDAT 4.0", x, y, sensor)
    return make_events(stored["t"], x, y, stored["on"] != 0)


def _event_packet(chunk: np.ndarray) -> bytes:
    """Size-prefixed ``EVTS`` flatbuffer: root → table (vtable: one field) → event vector."""
    table = (struct.pack("<I", 16) + b"EVTS" + b"\x00\x00" + struct.pack("<HHH", 6, 8, 4)
             + struct.pack("<iI", 6, 4) + struct.pack("<I", len(chunk)))
    stored = np.zeros(len(chunk), EVENT_STRUCT)
    stored["t"], stored["x"], stored["y"], stored["on"] = (chunk["t"], chunk["x"], chunk["y"],
                                                           chunk["p"])
    body = table + stored.tobytes()
    return struct.pack("<I", len(body)) + body


def _io_header(compression: int, info: bytes) -> bytes:
    """``IOHE`` flatbuffer: compression (int32), data-table position (int64 = −1), info node."""
    text = info + b"\x00"
    buf = (struct.pack("<I", 24) + b"IOHE" + bytes(6) + struct.pack("<HHHHH", 10, 20, 4, 12, 8)
           + struct.pack("<iiIq", 10, compression, 12, -1) + struct.pack("<I", len(info)) + text)
    return buf + bytes(-len(buf) % 4)


def write_aedat4(path: str | Path, events: np.ndarray, sensor_size: tuple[int, int],
                 events_per_packet: int = 4096, compression: str = "lz4") -> None:
    """Write polarity events as AEDAT 4.0 (inverse of :func:`read_aedat4`), one event stream
    (id 0) of ``sensor_size = (height, width)``, LZ4-compressed or uncompressed."""
    import lz4.frame

    codes = {"none": 0, "lz4": 1}
    if compression not in codes:
        raise ValueError(f"compression must be 'none' or 'lz4', got {compression!r}")
    if events_per_packet < 1:
        raise ValueError(f"events_per_packet must be >= 1, got {events_per_packet}")
    height, width = sensor_size
    events = check_writable(events, {"x": width, "y": height, "p": 2, "t": 1 << 62},
                             "AEDAT 4.0")
    info = (f'<dv version="2.0"><node name="outInfo" path="/outInfo/"><node name="0" '
            f'path="/outInfo/0/"><attr key="compression" type="string">'
            f'{compression.upper()}</attr><attr key="typeIdentifier" type="string">EVTS</attr>'
            f'<node name="info" path="/outInfo/0/info/"><attr key="sizeX" type="int">{width}'
            f'</attr><attr key="sizeY" type="int">{height}</attr></node></node></node></dv>')
    header = _io_header(codes[compression], info.encode())
    out = [AEDAT4_MAGIC, struct.pack("<i", len(header)), header]
    for a in range(0, len(events), events_per_packet):
        body = _event_packet(events[a:a + events_per_packet])
        if compression == "lz4":
            body = lz4.frame.compress(body)
        out.append(struct.pack("<ii", 0, len(body)) + body)
    atomic_write(path, b"".join(out))
