"""tonic in and out, on the real recordings of ../shared/data: ilif events through tonic's
transforms, tonic's events and datasets into ilif's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ilif.data import events as ev
from ilif.data import events_from_tonic, from_tonic
from ilif.data.frames import integrate
from ilif.data.tonic_io import ilif_sensor_size, tonic_sensor_size

tonic = pytest.importorskip("tonic")  # the dev extra installs it; users opt in (extra "tonic")
tonic_io = pytest.importorskip("tonic.io")
tonic_transforms = pytest.importorskip("tonic.transforms")

TONIC_NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic's NMNIST


class NMNISTFiles(tonic.Dataset):
    """A tonic dataset over N-MNIST files, read by tonic's own reader (tonic's NMNIST class wants
    the full 70,000-file download)."""

    sensor_size = (34, 34, 2)

    def __init__(self, files: list[Path], labels: list[int], transform=None):
        super().__init__(save_to=str(files[0].parent), transform=transform)
        self.data, self.targets = [str(f) for f in files], list(labels)

    def __getitem__(self, index):
        events = tonic_io.read_mnist_file(self.data[index], dtype=TONIC_NMNIST_DTYPE)
        if self.transform is not None:
            events = self.transform(events)
        return events, self.targets[index]

    def __len__(self):
        return len(self.data)


@pytest.fixture(scope="module")
def nmnist(shared_data):
    folder = shared_data / "events" / "nmnist" / "NMNISTsmall"
    labels = {}
    for listing in ("train1K.txt", "test100.txt"):  # "<id> <label>" lines under a # header
        for line in (folder / listing).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                sample, label = line.split()[:2]
                labels[sample] = int(label)
    files = sorted((f for f in folder.glob("*.bs2") if f.stem in labels), key=lambda p: int(p.stem))
    if not files:
        pytest.skip(f"no N-MNIST files in {folder}")
    return files, [labels[f.stem] for f in files]


def test_sensor_sizes_change_order():
    assert tonic_sensor_size((34, 40)) == (40, 34, 2)
    assert ilif_sensor_size((40, 34, 2)) == (34, 40)


def test_tonic_events_become_ilif_events(nmnist):
    files, _ = nmnist
    theirs = tonic_io.read_mnist_file(str(files[0]), dtype=TONIC_NMNIST_DTYPE)
    ours = ev.read_nmnist_bin(files[0])
    converted = events_from_tonic(theirs)
    assert converted.dtype == ev.EVENT_DTYPE
    assert np.array_equal(converted, ours)  # the two readers agree event for event
    # boolean and ±1 polarities
    flags = np.zeros(3, dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    flags["p"] = [True, False, True]
    assert events_from_tonic(flags)["p"].tolist() == [1, 0, 1]
    signed = ev.make_events([0, 1], [0, 0], [0, 0], [0, 0]).astype(
        [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    signed["p"] = [-1, 1]
    assert events_from_tonic(signed)["p"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="fields t, x, y, p"):
        events_from_tonic(np.zeros((3, 2, 34, 34)))


def test_ilif_events_go_through_tonic_transforms(nmnist):
    """ToFrame(n_event_bins=T) on ilif's array: frames 0…T−2 equal ilif's split by number; the
    last differs by the N mod T trailing events, which tonic drops and ilif adds to its last
    frame (SpikingJelly's rule)."""
    files, _ = nmnist
    T = 7
    for path in files[:4]:
        events = ev.read_nmnist_bin(path)
        theirs = tonic_transforms.ToFrame(sensor_size=tonic_sensor_size(ev.NMNIST_SENSOR),
                                          n_event_bins=T)(events)
        ours = integrate(events, T, ev.NMNIST_SENSOR, "number")
        assert theirs.shape == ours.shape == (T, 2, 34, 34)
        assert np.array_equal(theirs[:-1], ours[:-1])
        per_frame = len(events) // T
        tail = integrate(events[T * per_frame :], 1, ev.NMNIST_SENSOR)[0]
        assert np.array_equal(ours[-1] - theirs[-1], tail)
        assert ours.sum() == len(events) and theirs.sum() == T * per_frame
    # other tonic transforms take ilif arrays and keep the fields
    small = tonic_transforms.Downsample(spatial_factor=0.5)(events.copy())
    assert set(small.dtype.names) == {"t", "x", "y", "p"} and small["x"].max() < 17


def test_from_tonic_gives_ilif_frames_and_caches_them(nmnist, tmp_path):
    files, labels = nmnist
    wrapped = from_tonic(NMNISTFiles(files, labels), T=5, cache_dir=tmp_path / "cache",
                         progress=False)
    assert len(wrapped) == len(files) and wrapped.targets == labels
    for index in (0, len(files) - 1):
        x, y = wrapped[index]
        reference = integrate(ev.read_nmnist_bin(files[index]), 5, ev.NMNIST_SENSOR, "number")
        assert y == labels[index] and x.shape == (5, 2, 34, 34)
        assert np.array_equal(x.numpy(), reference)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2
    again = from_tonic(NMNISTFiles(files, labels), T=5, cache_dir=tmp_path / "cache",
                       progress=False)
    assert again.cache.load(again.cache_key(0)) is not None  # the same key: a hit
    timed = from_tonic(NMNISTFiles(files, labels), T=3, split_by="time", progress=False)
    reference = integrate(ev.read_nmnist_bin(files[1]), 3, ev.NMNIST_SENSOR, "time")
    assert np.array_equal(timed[1][0].numpy(), reference)
    framed = NMNISTFiles(files, labels, transform=tonic_transforms.ToFrame(
        sensor_size=NMNISTFiles.sensor_size, n_event_bins=3))
    with pytest.raises(ValueError, match="must not be set on a dataset given to from_tonic"):
        from_tonic(framed, T=3, progress=False)[0]


class DVS128File(tonic.Dataset):
    """One jAER AEDAT 2.0 recording through tonic's AER reader and the address decoding of
    tonic's ``read_dvs_128`` (whose own header call fails in tonic 1.7.0)."""

    sensor_size = (128, 128, 2)

    def __init__(self, path: Path):
        super().__init__(save_to=str(path.parent))
        self.data, self.targets = [str(path)], [0]

    def __getitem__(self, index):
        version, start, *_ = tonic_io.read_aedat_header_from_file(self.data[index])
        raw = tonic_io.get_aer_events_from_file(self.data[index], version, start)
        address = raw["address"].astype(np.int64)
        x, y, p = (address >> 8) & 0x7F, (address >> 1) & 0x7F, address & 1
        events = tonic_io.make_structured_array(x, y, raw["timeStamp"].astype(np.int64), p)
        return events, self.targets[index]

    def __len__(self):
        return 1


def test_a_dvs128_recording_through_tonic_is_ilifs_transposed(shared_data):
    """tonic's ``read_dvs_128`` takes x from address bits 8-14 and y from bits 1-7; jAER (and
    ilif, SpikingJelly) the other way round: the frames agree up to a transpose."""
    path = shared_data / "events" / "format_standins" / "alex_walking_again.aedat"
    x, _ = from_tonic(DVS128File(path), T=4, progress=False)[0]
    ours = integrate(ev.read_aedat2(path), 4, ev.DVS128_SENSOR, "number")
    assert x.sum() == ours.sum() > 0
    assert np.array_equal(x.numpy(), ours.transpose(0, 1, 3, 2))
