"""Event readers/writers (real N-MNIST and AEDAT 2.0 files, written AEDAT 3.1) and the emulator."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from data_fixtures import spikingjelly_functions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ilif.data import events as ev
from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.eventsets import read_gesture_labels, read_trials


def random_events(n, height=128, width=128, t_max=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    return ev.make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, width, n),
                          rng.integers(0, height, n), rng.integers(0, 2, n))


# ----------------------------------------------------------------- independent decoders
def decode_40bit(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(t, x, y, p) per 5-byte event, read as one 40-bit big-endian integer."""
    out = []
    for i in range(0, len(raw), 5):
        v = int.from_bytes(raw[i:i + 5], "big")
        out.append((v & 0x7FFFFF, v >> 32, (v >> 24) & 0xFF, (v >> 23) & 1))
    return out


def decode_aedat2(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(t, x, y, p): skip '#' lines, then struct-unpack big-endian (address, timestamp)."""
    pos = 0
    while raw[pos:pos + 1] == b"#":
        pos = raw.index(b"\n", pos) + 1
    out = []
    for address, stamp in struct.iter_unpack(">II", raw[pos:]):
        if address & 0x8000:
            continue
        out.append((stamp, (address & 0xFE) >> 1, (address & 0x7F00) >> 8, address & 1))
    return out


def decode_aedat31(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(t, x, y, p) of valid polarity events, packet by packet with struct."""
    pos = raw.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    out = []
    while pos < len(raw):
        kind, _, size, _, overflow, capacity, number, _ = struct.unpack("<hhiiiiii",
                                                                      raw[pos:pos + 28])
        body = raw[pos + 28:pos + 28 + capacity * size]
        if kind == 1:
            for k in range(number):
                word, stamp = struct.unpack("<Ii", body[k * size:k * size + 8])
                if word & 1:
                    out.append((overflow * 2**31 + stamp, (word >> 17) & 0x7FFF,
                                (word >> 2) & 0x7FFF, (word >> 1) & 1))
        pos += 28 + capacity * size
    return out


def as_tuples(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in row) for row in zip(events["t"], events["x"], events["y"],
                                                      events["p"], strict=True)]


# --------------------------------------------------------------------------- N-MNIST
def test_real_nmnist_sample_decodes_to_documented_counts(shared_data):
    path = shared_data / "events" / "nmnist" / "sample_nmnist.bin"
    raw = path.read_bytes()
    assert hashlib.md5(raw).hexdigest() == "a31ca78398ea46063dc394a5a2ba0acd"
    events = ev.read_nmnist_bin(path)
    assert events.dtype == ev.EVENT_DTYPE and len(events) == 4325
    assert (events["t"].min(), events["t"].max()) == (654, 311175)
    assert events["x"].max() < 34 and events["y"].max() < 34 and events["x"].min() >= 0
    assert as_tuples(events) == decode_40bit(raw)


def test_real_nmnist_small_files_match_independent_and_peer_decoding(shared_data):
    peer = spikingjelly_functions("load_ATIS_bin")["load_ATIS_bin"]
    folder = shared_data / "events" / "nmnist" / "NMNISTsmall"
    files = sorted(folder.glob("*.bs2"))
    assert len(files) == 20
    assert hashlib.md5((folder / "1.bs2").read_bytes()).hexdigest() == \
        "4fe953f6d914c0fb2e112b6a2c337a2a"
    counts = []
    for path in files:
        events = ev.read_nmnist_bin(path)
        counts.append(len(events))
        assert len(events) == path.stat().st_size // 5
        assert events["x"].max() < 34 and events["y"].max() < 34
        assert 0 <= events["t"].min() and events["t"].max() < 400_000  # about 300 ms each
        reference = peer(path)
        for field in "txyp":
            np.testing.assert_array_equal(events[field], reference[field].astype(np.int64))
    assert (min(counts), max(counts)) == (1665, 6144)  # the range SOURCES.md lists
    assert as_tuples(ev.read_nmnist_bin(files[0])) == decode_40bit(files[0].read_bytes())


def test_nmnist_writer_round_trip_and_errors(tmp_path):
    events = random_events(200, 34, 34, t_max=1 << 23)
    ev.write_nmnist_bin(tmp_path / "a.bin", events)
    assert (tmp_path / "a.bin").stat().st_size == 1000
    np.testing.assert_array_equal(ev.read_nmnist_bin(tmp_path / "a.bin"), events)
    raw = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-2])
    with pytest.raises(DatasetError, match=r"cut\.bin.*3 trailing bytes"):
        ev.read_nmnist_bin(tmp_path / "cut.bin")
    (tmp_path / "wide.bin").write_bytes(bytes([40, 3, 0, 0, 1]) + raw[5:])
    with pytest.raises(DatasetError, match=r"wide\.bin.*outside the 34×34 sensor.*x=40"):
        ev.read_nmnist_bin(tmp_path / "wide.bin")
    with pytest.raises(DatasetNotFoundError, match="missing.bin"):
        ev.read_nmnist_bin(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="'t'"):
        ev.write_nmnist_bin(tmp_path / "b.bin", ev.make_events([1 << 23], [0], [0], [0]))


# ------------------------------------------------------------------------- AEDAT 2.0
def test_real_aedat2_recording_decodes_to_documented_counts(shared_data):
    path = shared_data / "events" / "format_standins" / "alex_walking_again.aedat"
    events = ev.read_aedat2(path)
    assert len(events) == 19182
    assert int((events["p"] == 0).sum()) == 7102 and int((events["p"] == 1).sum()) == 12080
    assert round((events["t"][-1] - events["t"][0]) / 1e6, 3) == 6.887
    for field in "xy":
        assert 0 <= events[field].min() and events[field].max() <= 127
    assert as_tuples(events) == decode_aedat2(path.read_bytes())
    # SpikingJelly's CIFAR10-DVS loader transposes, mirrors and inverts polarity
    peer = spikingjelly_functions("_read_bits", "_skip_header", "_load_raw_events",
                                  "_parse_raw_address", "_load_events", "_load_origin_data",
                                  module="cifar10_dvs")["_load_origin_data"](path)
    np.testing.assert_array_equal(peer["t"], events["t"])
    np.testing.assert_array_equal(peer["x"], 127 - events["y"])
    np.testing.assert_array_equal(peer["y"], 127 - events["x"])
    np.testing.assert_array_equal(peer["p"], 1 - events["p"])


def test_aedat2_writer_round_trip_header_errors_and_special_events(tmp_path):
    events = random_events(300)
    path = tmp_path / "rec.aedat"
    ev.write_aedat2(path, events)
    np.testing.assert_array_equal(ev.read_aedat2(path), events)
    raw = path.read_bytes()
    special = struct.pack(">II", 0x8000 | (5 << 8), 7)  # an external (special) event
    (tmp_path / "special.aedat").write_bytes(raw + special)
    np.testing.assert_array_equal(ev.read_aedat2(tmp_path / "special.aedat"), events)
    (tmp_path / "cut.aedat").write_bytes(raw[:-3])
    with pytest.raises(DatasetError, match=r"cut\.aedat.*5 trailing bytes"):
        ev.read_aedat2(tmp_path / "cut.aedat")
    (tmp_path / "v1.aedat").write_bytes(raw.replace(b"#!AER-DAT2.0", b"#!AER-DAT1.0", 1))
    with pytest.raises(DatasetError, match="unsupported AEDAT version '1.0'"):
        ev.read_aedat2(tmp_path / "v1.aedat")
    (tmp_path / "nohead.aedat").write_bytes(raw[raw.index(b"\n") + 1:].lstrip(b"#"))
    with pytest.raises(DatasetError, match=r"nohead\.aedat: malformed header"):
        ev.read_aedat2(tmp_path / "nohead.aedat")


# ------------------------------------------------------------------------- AEDAT 3.1
def test_aedat31_written_file_matches_independent_and_peer_decoding(tmp_path):
    peer = spikingjelly_functions("load_aedat_v3")["load_aedat_v3"]
    events = random_events(1000, t_max=50_000_000, seed=2)
    events["t"][600:] += 2**31 - 30_000_000  # cross the 31-bit overflow between packets
    path = tmp_path / "user01_natural.aedat"
    ev.write_aedat31(path, events, events_per_packet=256)
    decoded = ev.read_aedat31(path)
    np.testing.assert_array_equal(decoded, events)
    assert as_tuples(decoded) == decode_aedat31(path.read_bytes())
    reference = peer(path)
    for field in "txyp":
        np.testing.assert_array_equal(decoded[field], reference[field].astype(np.int64))


def test_aedat31_skips_other_packets_and_invalid_events(tmp_path):
    events = random_events(10, seed=3)
    path = tmp_path / "a.aedat"
    ev.write_aedat31(path, events)
    raw = path.read_bytes()
    body_at = raw.index(b"#!END-HEADER\r\n") + 14
    # a special-event packet (type 0) of 2 events, then a polarity packet with capacity 3,
    # number 2: one valid event, one with the valid bit cleared, one unused slot
    special = struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 2, 2, 2) + bytes(16)
    valid_word = (7 << 17) | (9 << 2) | (1 << 1) | 1
    extra = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 3, 2, 1) + struct.pack(
        "<IiIiIi", valid_word, 2_000_000, valid_word & ~1, 2_000_001, valid_word, 2_000_002)
    (tmp_path / "b.aedat").write_bytes(raw[:body_at] + special + raw[body_at:] + extra)
    decoded = ev.read_aedat31(tmp_path / "b.aedat")
    assert len(decoded) == 11
    np.testing.assert_array_equal(decoded[:10], events)
    assert as_tuples(decoded[10:]) == [(2_000_000, 7, 9, 1)]
    assert as_tuples(decoded) == decode_aedat31((tmp_path / "b.aedat").read_bytes())


def test_aedat31_errors_name_file_and_problem(tmp_path):
    path = tmp_path / "a.aedat"
    ev.write_aedat31(path, random_events(20, seed=4), events_per_packet=8)
    raw = path.read_bytes()
    (tmp_path / "past.aedat").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match=r"past\.aedat: packet at byte \d+ runs past the end"):
        ev.read_aedat31(tmp_path / "past.aedat")
    (tmp_path / "noend.aedat").write_bytes(raw.replace(b"#!END-HEADER", b"#!ENDHEADER!"))
    with pytest.raises(DatasetError, match=r"noend\.aedat: malformed header"):
        ev.read_aedat31(tmp_path / "noend.aedat")
    ev.write_aedat31(tmp_path / "big.aedat", ev.make_events([5], [300], [2], [1]))
    with pytest.raises(DatasetError, match=r"big\.aedat.*outside the 128×128 sensor.*x=300"):
        ev.read_aedat31(tmp_path / "big.aedat")


# ------------------------------------------------------------------------- AEDAT 4.0
def data_table_index(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(stream id, elements, first t, last t) per packet from the file's own FileDataTable
    (an LZ4 flatbuffer at the end of the file), read with a separate minimal decoder."""
    import lz4.frame

    header_size = struct.unpack_from("<i", raw, 14)[0]
    header = raw[18:18 + header_size]
    position = struct.unpack_from("<q", header, 36)[0]  # the real file's header layout
    table = lz4.frame.decompress(raw[position:])[4:]

    def u32(pos):
        return struct.unpack_from("<I", table, pos)[0]

    def slots(pos):
        vtable = pos - struct.unpack_from("<i", table, pos)[0]
        count = (struct.unpack_from("<H", table, vtable)[0] - 4) // 2
        return [struct.unpack_from("<H", table, vtable + 4 + 2 * i)[0] for i in range(count)]

    root = u32(0)
    vector = root + slots(root)[0] + u32(root + slots(root)[0])
    rows = []
    for i in range(u32(vector)):
        entry = vector + 4 + 4 * i + u32(vector + 4 + 4 * i)
        offsets = slots(entry)
        stream = struct.unpack_from("<i", table, entry + offsets[1])[0]
        elements, first, last = (struct.unpack_from("<q", table, entry + offsets[k])[0]
                                 for k in (2, 3, 4))
        rows.append((stream, elements, first, last))
    return rows


def test_real_aedat4_matches_the_files_own_packet_index(shared_data):
    path = shared_data / "events" / "format_standins" / "sample.aedat4"
    events = ev.read_aedat4(path)
    index = [row for row in data_table_index(path.read_bytes()) if row[0] == 0]
    assert len(events) == sum(row[1] for row in index) == 111954
    assert events["t"][0] == index[0][2] and events["t"][-1] == index[-1][3]
    assert (np.diff(events["t"]) >= 0).all()
    assert events["x"].max() < 320 and events["y"].max() < 240 and events["x"].min() >= 0
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    with pytest.raises(DatasetError, match="outside the 128×128 sensor"):
        ev.read_aedat4(path, sensor_size=(128, 128))


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_aedat4_writer_round_trip(tmp_path, compression):
    events = random_events(1500, height=240, width=320, seed=11)
    path = tmp_path / "rec.aedat4"
    ev.write_aedat4(path, events, (240, 320), events_per_packet=400, compression=compression)
    np.testing.assert_array_equal(ev.read_aedat4(path), events)
    raw = bytearray(path.read_bytes())
    raw[18 + 28] = 3  # the header's compression field (int32 at table + 4) → zstd
    (tmp_path / "zstd.aedat4").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"zstd\.aedat4: compression 3 is not supported"):
        ev.read_aedat4(tmp_path / "zstd.aedat4")


# ------------------------------------------------------------------ corrupted inputs
def _mutate(draw, raw: bytes) -> bytes:
    data = bytearray(raw)
    flips = draw.draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)),
                               max_size=4))
    for pos, mask in flips:
        data[pos] ^= mask
    return bytes(data[:draw.draw(st.integers(0, len(data)))])


def _reader_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    small = random_events(24, 34, 34, t_max=1 << 20, seed=5)
    ev.write_nmnist_bin(folder / "n.bin", small)
    ev.write_aedat2(folder / "d2.aedat", random_events(24, seed=6))
    ev.write_aedat31(folder / "d3.aedat", random_events(24, seed=7), events_per_packet=7)
    ev.write_aedat4(folder / "d4.aedat4", random_events(24, seed=8), (128, 128),
                    events_per_packet=7, compression="none")
    ev.write_aedat4(folder / "z4.aedat4", random_events(24, seed=9), (128, 128),
                    events_per_packet=7)
    labels = "class,startTime_usec,endTime_usec\n1,100,200\n11,300,400\n"
    return {
        "nmnist": ((folder / "n.bin").read_bytes(), lambda p: ev.read_nmnist_bin(p),
                   (34, 34)),
        "aedat2": ((folder / "d2.aedat").read_bytes(), lambda p: ev.read_aedat2(p), (128, 128)),
        "aedat31": ((folder / "d3.aedat").read_bytes(), lambda p: ev.read_aedat31(p),
                    (128, 128)),
        "aedat4": ((folder / "d4.aedat4").read_bytes(), lambda p: ev.read_aedat4(p, (128, 128)),
                   (128, 128)),
        "aedat4-lz4": ((folder / "z4.aedat4").read_bytes(), lambda p: ev.read_aedat4(p, (128, 128)),
                       (128, 128)),
        "labels": (labels.encode(), read_gesture_labels, None),
        "trials": (b"user01_fluorescent.aedat\nuser02_led.aedat\n", read_trials, None),
    }


@pytest.fixture(scope="module")
def reader_inputs(tmp_path_factory):
    return _reader_inputs(tmp_path_factory)


@pytest.mark.parametrize("reader", ["nmnist", "aedat2", "aedat31", "aedat4", "aedat4-lz4",
                                    "labels", "trials"])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_corrupted_files_only_raise_dataset_error(reader, reader_inputs, tmp_path, draw):
    raw, read, sensor = reader_inputs[reader]
    path = tmp_path / f"corrupt_{reader}"
    path.write_bytes(_mutate(draw, raw))
    try:
        result = read(path)
    except DatasetError as exc:
        assert str(path) in str(exc)
        return
    if reader == "trials":
        assert all(name.endswith(".aedat") and "/" not in name for name in result)
    elif sensor is None:
        assert all(1 <= label <= 11 and 0 <= a < b for label, a, b in result)
    else:
        assert result.dtype == ev.EVENT_DTYPE
        assert ((result["x"] < sensor[1]) & (result["y"] < sensor[0])).all()
        assert set(np.unique(result["p"]).tolist()) <= {0, 1}
        assert (result["t"] >= 0).all()


def test_real_gesture_label_file(shared_data):
    rows = read_gesture_labels(shared_data / "events" / "dvs_gesture" /
                               "user01_natural_labels.csv")
    assert len(rows) == 12
    assert [r[0] for r in rows] == [1, 2, 3, 5, 4, 6, 7, 8, 8, 9, 10, 11]
    assert rows[0][1] == 53036986 and rows[-1][2] == 177991967


def test_gesture_label_errors_name_line(tmp_path):
    path = tmp_path / "u_labels.csv"
    path.write_text("class,startTime_usec,endTime_usec\n1,10,20\n3,x,40\n")
    with pytest.raises(DatasetError, match=r"u_labels\.csv, line 3"):
        read_gesture_labels(path)
    path.write_text("class,startTime_usec,endTime_usec\n12,10,20\n")
    with pytest.raises(DatasetError, match="line 2.*class must be 1–11"):
        read_gesture_labels(path)
    path.write_text("label,start,end\n1,10,20\n")
    with pytest.raises(DatasetError, match="first line must be"):
        read_gesture_labels(path)


# -------------------------------------------------------------------------- emulator
def test_emulator_constant_image_emits_nothing():
    assert [len(s) for s in ev.from_images(np.full((2, 8, 8), 0.7))] == [0, 0]


def test_emulator_vertical_edge_matches_hand_derived_counts():
    # left half dark (0), right half bright (1). Along the saccades the content moves right by
    # dx = 0 → 0.5 → 1 → 0; only column 4 sees a change: I = 1 − dx. With L = log(0.1 + I),
    # C = 0.2: saccade 1 ends at log 0.6 (⌊0.606 / C⌋ = 3 OFF), saccade 2 at log 0.1
    # (⌊2.398 / C⌋ = 11 OFF in total), saccade 3 returns (11 ON).
    image = np.zeros((8, 8))
    image[:, 4:] = 1.0
    (stream,) = ev.from_images(image, threshold=0.2, shift=1.0, saccade_us=100_000)
    assert set(stream["x"].tolist()) == {4}
    for row in range(8):
        mine = stream[stream["y"] == row]
        saccade = mine["t"] // 100_000
        assert ((saccade == 0) & (mine["p"] == 0)).sum() == 3
        assert ((saccade == 1) & (mine["p"] == 0)).sum() == 8
        assert ((saccade == 2) & (mine["p"] == 1)).sum() == 11
        assert len(mine) == 22


def test_emulator_streams_are_sorted_balanced_and_deterministic():
    images = np.random.default_rng(8).random((3, 10, 12))
    streams = ev.from_images(images)
    again = ev.from_images(images)
    for stream, repeat in zip(streams, again, strict=True):
        np.testing.assert_array_equal(stream, repeat)
        assert len(stream) > 0 and (np.diff(stream["t"]) >= 0).all()
        assert stream["t"].min() >= 0 and stream["t"].max() < 300_000
        assert stream["x"].max() < 12 and stream["y"].max() < 10
        on = np.zeros((10, 12), int)
        off = np.zeros((10, 12), int)
        np.add.at(on, (stream["y"][stream["p"] == 1], stream["x"][stream["p"] == 1]), 1)
        np.add.at(off, (stream["y"][stream["p"] == 0], stream["x"][stream["p"] == 0]), 1)
        np.testing.assert_array_equal(on, off)  # the path returns to its start
